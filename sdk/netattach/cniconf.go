package netattach

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/containernetworking/cni/libcni"
)

// cniVersion is the newest spec version Debian 12's plugins (1.1.1) speak.
const cniVersion = "1.0.0"

// loopbackList brings up lo in the task's namespace.
var loopbackList = mustConfList(map[string]any{
	"cniVersion": cniVersion,
	"name":       "shoal-loopback",
	"plugins":    []any{map[string]any{"type": "loopback"}},
})

// cniList is the CNI configuration and runtime arguments of a task's i-th
// network. The same record always gives the same configuration, which is
// what DEL after a restart needs.
//
// The task's interface gets its address with the prefix of the node's slice
// (10.200.3.7/24, not /16) and the bridge the gateway with the same prefix:
// tasks of the slice talk over the bridge, and everything else goes through
// the gateway, where the host routes other slices to their nodes (doc.go).
// The first network also carries the default route and the published ports.
func (m *Manager) cniList(rec *record, i int) (*libcni.NetworkConfigList, *libcni.RuntimeConf, error) {
	n := rec.Networks[i]
	route := map[string]any{"dst": n.Subnet.String(), "gw": n.Gateway.String()}
	if i == 0 {
		route["dst"] = "0.0.0.0/0"
	}
	plugins := []any{map[string]any{
		"type":        "bridge",
		"bridge":      n.Bridge,
		"isGateway":   true,
		"ipMasq":      false, // the firewall masquerades per slice, not per task
		"hairpinMode": true,  // a task reaches itself through a published port
		"ipam": map[string]any{
			"type": "static",
			"addresses": []any{map[string]any{
				"address": netip.PrefixFrom(n.Addr, n.NodeSubnet.Bits()).String(),
				"gateway": n.Gateway.String(),
			}},
			"routes": []any{route},
		},
	}}
	rt := &libcni.RuntimeConf{ContainerID: rec.TaskID, NetNS: rec.Netns, IfName: n.IfName}
	if i == 0 && len(rec.Ports) > 0 {
		plugins = append(plugins, map[string]any{
			"type":         "portmap",
			"capabilities": map[string]bool{"portMappings": true},
			"snat":         true,
		})
		pm := make([]map[string]any, len(rec.Ports))
		for j, p := range rec.Ports {
			pm[j] = map[string]any{"hostPort": p.PublishedPort, "containerPort": p.TargetPort, "protocol": p.Protocol}
		}
		rt.CapabilityArgs = map[string]any{"portMappings": pm}
	}
	list, err := confList(map[string]any{
		"cniVersion": cniVersion,
		"name":       "shoal-" + n.NetworkID,
		"plugins":    plugins,
	})
	if err != nil {
		return nil, nil, err
	}
	return list, rt, nil
}

func confList(v map[string]any) (*libcni.NetworkConfigList, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode CNI config: %w", err)
	}
	list, err := libcni.NetworkConfFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("CNI config: %w", err)
	}
	return list, nil
}

func mustConfList(v map[string]any) *libcni.NetworkConfigList {
	l, err := confList(v)
	if err != nil {
		panic(err)
	}
	return l
}
