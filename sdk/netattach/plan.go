package netattach

import (
	"fmt"
	"net/netip"
	"regexp"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/hostnet"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// idPattern is what CNI accepts as a container ID and a network name, and
// what is safe as a file name under StateDir.
var idPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)

// maxIDLen keeps file names and CNI cache names well under NAME_MAX.
const maxIDLen = 128

// bridgeIDChars is how much of a network ID names its bridge: "sh-" plus 12
// characters is 15, the kernel's limit for an interface name (IFNAMSIZ-1).
const bridgeIDChars = 12

// maxNetworks bounds a task's networks: interfaces are eth0..eth<n-1>, and a
// task on more networks than this is a spec error, not a real need.
const maxNetworks = 16

// netPlan is one validated NetworkAttachment, parsed.
type netPlan struct {
	NetworkID  string       `json:"network_id"`
	Addr       netip.Addr   `json:"addr"`
	Subnet     netip.Prefix `json:"subnet"`
	NodeSubnet netip.Prefix `json:"node_subnet"`
	Gateway    netip.Addr   `json:"gateway"`
	Bridge     string       `json:"bridge"`
	IfName     string       `json:"if_name"`
}

// portPlan is one validated published port.
type portPlan struct {
	Protocol      string `json:"protocol"`
	TargetPort    uint16 `json:"target_port"`
	PublishedPort uint16 `json:"published_port"`
}

// BridgeName is the name of the node's bridge for a network: "sh-" and
// the first 12 characters of its ID.
func BridgeName(networkID string) string {
	if len(networkID) > bridgeIDChars {
		networkID = networkID[:bridgeIDChars]
	}
	return "sh-" + networkID
}

// validateTaskID checks a task ID used as a file name and CNI container ID.
func validateTaskID(fe *sdk.FieldErrors, taskID string) {
	switch {
	case taskID == "":
		fe.Add("task_id", "is required")
	case len(taskID) > maxIDLen:
		fe.Add("task_id", "is %d characters, at most %d are allowed", len(taskID), maxIDLen)
	case !idPattern.MatchString(taskID):
		fe.Add("task_id", "%q has characters other than letters, digits, '_', '.' and '-' (or does not start with a letter or digit)", taskID)
	}
}

// plan validates Attach's input and returns it parsed. Every error names the
// field, e.g. "networks[1].gateway".
func plan(taskID string, nets []*objectv1.NetworkAttachment, ports []*objectv1.PortConfig) ([]netPlan, []portPlan, error) {
	var fe sdk.FieldErrors
	validateTaskID(&fe, taskID)
	if len(nets) > maxNetworks {
		fe.Add("networks", "has %d networks, at most %d are allowed", len(nets), maxNetworks)
		return nil, nil, fe.Err()
	}
	seen := map[string]int{}
	var plans []netPlan
	for i, n := range nets {
		f := fmt.Sprintf("networks[%d]", i)
		if n == nil {
			fe.Add(f, "is null")
			continue
		}
		p, ok := planNetwork(&fe, f, n)
		if !ok {
			continue
		}
		if j, dup := seen[p.NetworkID]; dup {
			fe.Add(f+".network_id", "%q is also networks[%d]: a task joins a network once", p.NetworkID, j)
			continue
		}
		seen[p.NetworkID] = i
		for _, q := range plans {
			if q.Subnet.Overlaps(p.Subnet) {
				fe.Add(f+".subnet", "%s overlaps %s of network %q", p.Subnet, q.Subnet, q.NetworkID)
			}
		}
		p.IfName = fmt.Sprintf("eth%d", i)
		plans = append(plans, p)
	}
	if len(ports) > 0 && len(nets) == 0 {
		fe.Add("ports", "publishing ports needs at least one network to forward them to")
	}
	published := map[portPlan]int{}
	var pps []portPlan
	for i, pc := range ports {
		f := fmt.Sprintf("ports[%d]", i)
		if pc == nil {
			fe.Add(f, "is null")
			continue
		}
		pp := portPlan{Protocol: pc.GetProtocol()}
		if pp.Protocol == "" {
			pp.Protocol = "tcp"
		}
		ok := true
		if pp.Protocol != "tcp" && pp.Protocol != "udp" {
			fe.Add(f+".protocol", "%q is not \"tcp\" or \"udp\"", pc.GetProtocol())
			ok = false
		}
		if pc.GetTargetPort() < 1 || pc.GetTargetPort() > 65535 {
			fe.Add(f+".target_port", "%d is not in 1..65535", pc.GetTargetPort())
			ok = false
		}
		if pc.GetPublishedPort() < 1 || pc.GetPublishedPort() > 65535 {
			fe.Add(f+".published_port", "%d is not in 1..65535", pc.GetPublishedPort())
			ok = false
		}
		switch pc.GetMode() {
		case objectv1.PublishMode_PUBLISH_MODE_UNSPECIFIED, objectv1.PublishMode_PUBLISH_MODE_HOST:
		default:
			fe.Add(f+".mode", "%s is not supported: only host mode publishes ports on a node", pc.GetMode())
			ok = false
		}
		if !ok {
			continue
		}
		pp.TargetPort, pp.PublishedPort = uint16(pc.GetTargetPort()), uint16(pc.GetPublishedPort())
		key := portPlan{Protocol: pp.Protocol, PublishedPort: pp.PublishedPort}
		if j, dup := published[key]; dup {
			fe.Add(f+".published_port", "%s/%d is also published by ports[%d]", pp.Protocol, pp.PublishedPort, j)
			continue
		}
		published[key] = i
		pps = append(pps, pp)
	}
	if err := fe.Err(); err != nil {
		return nil, nil, err
	}
	return plans, pps, nil
}

// planNetwork validates one attachment. Only IPv4 is supported: the node
// routes between slices with IPv4 routes and masquerades with iptables.
func planNetwork(fe *sdk.FieldErrors, f string, n *objectv1.NetworkAttachment) (netPlan, bool) {
	before := len(*fe)
	p := netPlan{NetworkID: n.GetNetworkId()}
	switch {
	case p.NetworkID == "":
		fe.Add(f+".network_id", "is required")
	case len(p.NetworkID) > maxIDLen-len("shoal-"):
		fe.Add(f+".network_id", "is %d characters, at most %d are allowed", len(p.NetworkID), maxIDLen-len("shoal-"))
	case !idPattern.MatchString(p.NetworkID):
		fe.Add(f+".network_id", "%q has characters other than letters, digits, '_', '.' and '-'", p.NetworkID)
	}
	p.Bridge = BridgeName(p.NetworkID)

	subnet, okSubnet := hostnet.ParseIPv4Prefix(fe, f+".subnet", n.GetSubnet())
	nodeSubnet, okNode := hostnet.ParseIPv4Prefix(fe, f+".node_subnet", n.GetNodeSubnet())
	if okSubnet && okNode {
		if nodeSubnet.Bits() < subnet.Bits() || !subnet.Contains(nodeSubnet.Addr()) {
			fe.Add(f+".node_subnet", "%s is not inside the network's subnet %s", nodeSubnet, subnet)
			okNode = false
		} else if nodeSubnet.Bits() > 30 {
			fe.Add(f+".node_subnet", "%s is too small: the prefix length must be at most 30", nodeSubnet)
			okNode = false
		}
	}
	p.Subnet, p.NodeSubnet = subnet, nodeSubnet

	// addr carries the network's prefix length by contract; the task's
	// interface gets node_subnet's instead (see doc.go), so only the
	// address matters here.
	if a, err := netip.ParsePrefix(n.GetAddr()); err != nil {
		fe.Add(f+".addr", "%q is not an address in CIDR form (e.g. \"10.200.3.7/16\")", n.GetAddr())
	} else if !a.Addr().Is4() {
		fe.Add(f+".addr", "%s is not IPv4: only IPv4 networks are supported", a)
	} else {
		p.Addr = a.Addr()
		if okNode && !usable(nodeSubnet, p.Addr) {
			fe.Add(f+".addr", "%s is not a host address of the node's slice %s", p.Addr, nodeSubnet)
		}
	}
	if g, err := netip.ParseAddr(n.GetGateway()); err != nil {
		fe.Add(f+".gateway", "%q is not an IP address", n.GetGateway())
	} else if !g.Is4() {
		fe.Add(f+".gateway", "%s is not IPv4: only IPv4 networks are supported", g)
	} else {
		p.Gateway = g
		switch {
		case okNode && !usable(nodeSubnet, g):
			fe.Add(f+".gateway", "%s is not a host address of the node's slice %s", g, nodeSubnet)
		case g == p.Addr:
			fe.Add(f+".gateway", "%s is also the task's address", g)
		}
	}
	return p, len(*fe) == before
}

// usable reports whether a is a host address of p: inside, and neither its
// network nor its broadcast address.
func usable(p netip.Prefix, a netip.Addr) bool {
	if !p.Contains(a) || a == p.Addr() {
		return false
	}
	return a != lastAddr(p)
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := 32 - p.Bits()
	for i := 3; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		b[i] |= byte(1<<n - 1)
		host -= n
	}
	return netip.AddrFrom4(b)
}
