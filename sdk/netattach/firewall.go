package netattach

import (
	"context"
	"net/netip"
	"sync"

	"github.com/shoalhq/shoal/sdk/hostnet"
)

// The chains a network's rules are in, jumped to once from the built-in
// chains; the rules inside are per network, tagged with a comment naming
// it. The node keeps a chain of its own (SHOAL-INPUT) for its overlay.
const (
	forwardChain = "SHOAL-FORWARD"
	natChain     = "SHOAL-POSTROUTING"
)

// firewall keeps the iptables rules a network needs on a node:
//
//   - filter FORWARD: traffic from the network's subnet is accepted (task to
//     task on this node through the bridge when br_netfilter is loaded, task
//     to task across nodes, task to the outside), and traffic to it is
//     accepted when it is a reply or was DNATed by a published port. This
//     makes the overlay work on hosts whose FORWARD policy is DROP (Docker
//     sets it so).
//   - nat POSTROUTING: traffic from this node's slice leaving the network's
//     subnet is masqueraded, so tasks reach the outside; traffic between
//     slices keeps the task's address.
//
// It runs the iptables binary, as the CNI plugins do. Without one, no rules
// are kept: tasks still reach each other, but not the outside.
type firewall struct {
	ipt hostnet.Iptables

	// mu serializes rule changes: checking then appending is not atomic.
	mu sync.Mutex
}

func newFirewall() *firewall {
	return &firewall{ipt: hostnet.FindIptables()}
}

// networkRules are the rules of one network.
func networkRules(networkID string, subnet, nodeSubnet netip.Prefix) []hostnet.Rule {
	comment := []string{"-m", "comment", "--comment", "shoal network " + networkID}
	return []hostnet.Rule{
		{Table: "filter", Chain: forwardChain, Spec: append([]string{"-s", subnet.String(), "-j", "ACCEPT"}, comment...)},
		{Table: "filter", Chain: forwardChain, Spec: append([]string{"-d", subnet.String(), "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "ACCEPT"}, comment...)},
		{Table: "nat", Chain: natChain, Spec: append([]string{"-s", nodeSubnet.String(), "!", "-d", subnet.String(), "-j", "MASQUERADE"}, comment...)},
	}
}

// ensureNetwork adds the network's rules that are missing, and the jumps to
// shoal's chains.
func (f *firewall) ensureNetwork(ctx context.Context, networkID string, subnet, nodeSubnet netip.Prefix) error {
	if f.ipt.Bin == "" {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.ipt.EnsureChain(ctx, "filter", forwardChain, "FORWARD"); err != nil {
		return err
	}
	if err := f.ipt.EnsureChain(ctx, "nat", natChain, "POSTROUTING"); err != nil {
		return err
	}
	for _, r := range networkRules(networkID, subnet, nodeSubnet) {
		ok, err := f.ipt.Exists(ctx, r)
		if err != nil {
			return err
		}
		if !ok {
			if _, err := f.ipt.Run(ctx, append([]string{"-t", r.Table, "-A", r.Chain}, r.Spec...)...); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeNetwork deletes the network's rules. The chains and jumps stay:
// they are empty without networks.
func (f *firewall) removeNetwork(ctx context.Context, networkID string, subnet, nodeSubnet netip.Prefix) error {
	if f.ipt.Bin == "" {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range networkRules(networkID, subnet, nodeSubnet) {
		// A rule may be there more than once if someone added it by hand.
		for range 8 {
			ok, err := f.ipt.Exists(ctx, r)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			if _, err := f.ipt.Run(ctx, append([]string{"-t", r.Table, "-D", r.Chain}, r.Spec...)...); err != nil {
				return err
			}
		}
	}
	return nil
}
