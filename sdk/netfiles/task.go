package netfiles

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TaskNames returns the task's own names as the node's DNS server answers
// them on the task's networks: SERVICE.SLOT for a task of a replicated
// service (slot 1 and up), SERVICE.NODEID for a task of a global service
// (slot 0), then that name followed by "." and the task's ID; SERVICE is
// the task's t.ServiceAnnotations.Name. Names are in ASCII lower case, as
// DNS compares them. It returns nil for a task that has no such name: one
// without a service name or an ID, or a global task without a node.
func TaskNames(t *objectv1.Task) []string {
	service, id := t.GetServiceAnnotations().GetName(), t.GetId()
	var name string
	switch {
	case service == "" || id == "":
		return nil
	case t.GetSlot() > 0:
		name = service + "." + strconv.FormatUint(t.GetSlot(), 10)
	case t.GetNodeId() != "":
		name = service + "." + t.GetNodeId()
	default:
		return nil
	}
	name = CanonicalName(name)
	return []string{name, name + "." + CanonicalName(id)}
}

// TaskFiles renders the /etc/resolv.conf and /etc/hosts of a task with
// networks:
//
//   - resolvConf names the node's DNS server at the gateway of the task's
//     first network (t.Networks[0].Gateway) and copies host's search
//     domains and options (ResolvConf);
//   - hosts has the localhost lines, then one line for the task's address
//     on each of its networks (each address once) with hostname (when not
//     empty) and the task's names (TaskNames).
//
// A task without networks is an error: it shares the node's network and
// keeps the node's files. So is what cannot be written into the files; the
// error is of kind sdk.ErrInvalidArgument and names the task's fields
// ("networks[0].gateway", "networks[1].addr", "service_annotations.name",
// "hostname"...).
func TaskFiles(t *objectv1.Task, host HostConfig, hostname string) (resolvConf, hosts []byte, err error) {
	nets := t.GetNetworks()
	if len(nets) == 0 {
		return nil, nil, fmt.Errorf("render the files of task %s: %w", t.GetId(), sdk.FieldErrors{{
			Field: "networks", Message: "is empty: a task without networks keeps the node's resolv.conf and hosts",
		}})
	}
	var fe sdk.FieldErrors
	gw, err := netip.ParseAddr(nets[0].GetGateway())
	switch {
	case err != nil:
		fe.Add("networks[0].gateway", "%q is not an IP address", nets[0].GetGateway())
	case gw.IsUnspecified() || gw.IsMulticast():
		fe.Add("networks[0].gateway", "%s is not a host address", gw)
	}
	addrs := make([]netip.Addr, 0, len(nets))
	for i, n := range nets {
		a, ok := parseAddr(n.GetAddr())
		switch {
		case !ok:
			fe.Add(fmt.Sprintf("networks[%d].addr", i), "%q is not an address in CIDR form (e.g. \"10.200.3.7/16\")", n.GetAddr())
		case a.IsUnspecified() || a.IsMulticast():
			fe.Add(fmt.Sprintf("networks[%d].addr", i), "%s is not a host address", a)
		default:
			addrs = append(addrs, a)
		}
	}
	var names []string
	if hostname != "" {
		checkHostsName(&fe, "hostname", hostname)
		names = append(names, hostname)
	}
	tn := TaskNames(t)
	if len(tn) > 0 {
		checkTaskNames(&fe, t, tn)
		names = append(names, tn...)
	}
	if err := fe.Err(); err != nil {
		return nil, nil, fmt.Errorf("render the files of task %s: %w", t.GetId(), err)
	}
	if resolvConf, err = ResolvConf(gw, host); err != nil {
		return nil, nil, fmt.Errorf("render the files of task %s: %w", t.GetId(), err)
	}
	return resolvConf, renderHosts(addrs, names), nil
}

// parseAddr parses an attachment's address: CIDR form by contract
// ("10.200.3.7/16"), or a bare address.
func parseAddr(s string) (netip.Addr, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr().Unmap(), true
	}
	a, err := netip.ParseAddr(s)
	return a.Unmap(), err == nil && a.Zone() == ""
}

// checkTaskNames checks the parts of TaskNames(t) (names) so that the
// errors name the task's field at fault.
func checkTaskNames(fe *sdk.FieldErrors, t *objectv1.Task, names []string) {
	before := len(*fe)
	checkPart(fe, "service_annotations.name", t.GetServiceAnnotations().GetName())
	if t.GetSlot() == 0 {
		checkPart(fe, "node_id", t.GetNodeId())
	}
	checkPart(fe, "id", t.GetId())
	if len(*fe) > before {
		return
	}
	if long := names[len(names)-1]; len(long) > maxNameLen {
		fe.Add("service_annotations.name", "makes the task name %q, %d characters; a name is at most %d", long, len(long), maxNameLen)
	}
}

// checkPart adds an error naming field when s would break a line of
// /etc/hosts.
func checkPart(fe *sdk.FieldErrors, field, s string) {
	if strings.ContainsFunc(s, badHostsRune) {
		fe.Add(field, "%q has white space, control characters, '#' or ';': it cannot be in a host name", s)
	}
}
