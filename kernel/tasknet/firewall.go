package tasknet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// The chains shoal owns. Each is jumped to from the built-in chain once;
// the rules inside are per network, tagged with a comment naming it.
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
	bin string // "" when the node has no iptables

	// mu serializes rule changes: checking then appending is not atomic.
	mu sync.Mutex
}

// newFirewall finds iptables in PATH or the usual sbin directories.
func newFirewall() *firewall {
	if p, err := exec.LookPath("iptables"); err == nil {
		return &firewall{bin: p}
	}
	for _, p := range []string{"/usr/sbin/iptables", "/sbin/iptables"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return &firewall{bin: p}
		}
	}
	return &firewall{}
}

// rule is one iptables rule: a table, a chain and a rule specification.
type rule struct {
	table, chain string
	spec         []string
}

// networkRules are the rules of one network.
func networkRules(networkID string, subnet, nodeSubnet netip.Prefix) []rule {
	comment := []string{"-m", "comment", "--comment", "shoal network " + networkID}
	return []rule{
		{"filter", forwardChain, append([]string{"-s", subnet.String(), "-j", "ACCEPT"}, comment...)},
		{"filter", forwardChain, append([]string{"-d", subnet.String(), "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "ACCEPT"}, comment...)},
		{"nat", natChain, append([]string{"-s", nodeSubnet.String(), "!", "-d", subnet.String(), "-j", "MASQUERADE"}, comment...)},
	}
}

// ensureNetwork adds the network's rules that are missing, and the jumps to
// shoal's chains.
func (f *firewall) ensureNetwork(ctx context.Context, networkID string, subnet, nodeSubnet netip.Prefix) error {
	if f.bin == "" {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range []struct{ table, chain, from string }{
		{"filter", forwardChain, "FORWARD"},
		{"nat", natChain, "POSTROUTING"},
	} {
		if _, err := f.run(ctx, "-t", c.table, "-N", c.chain); err != nil && !strings.Contains(err.Error(), "exists") {
			return err
		}
		jump := rule{c.table, c.from, []string{"-j", c.chain}}
		if ok, err := f.exists(ctx, jump); err != nil {
			return err
		} else if !ok {
			if _, err := f.run(ctx, append([]string{"-t", c.table, "-I", c.from, "1"}, jump.spec...)...); err != nil {
				return err
			}
		}
	}
	for _, r := range networkRules(networkID, subnet, nodeSubnet) {
		ok, err := f.exists(ctx, r)
		if err != nil {
			return err
		}
		if !ok {
			if _, err := f.run(ctx, append([]string{"-t", r.table, "-A", r.chain}, r.spec...)...); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeNetwork deletes the network's rules. The chains and jumps stay:
// they are empty without networks.
func (f *firewall) removeNetwork(ctx context.Context, networkID string, subnet, nodeSubnet netip.Prefix) error {
	if f.bin == "" {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range networkRules(networkID, subnet, nodeSubnet) {
		// A rule may be there more than once if someone added it by hand.
		for range 8 {
			ok, err := f.exists(ctx, r)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			if _, err := f.run(ctx, append([]string{"-t", r.table, "-D", r.chain}, r.spec...)...); err != nil {
				return err
			}
		}
	}
	return nil
}

// exists reports whether a rule is there (iptables -C exits 1 when not, and
// also when the chain is missing).
func (f *firewall) exists(ctx context.Context, r rule) (bool, error) {
	_, err := f.run(ctx, append([]string{"-t", r.table, "-C", r.chain}, r.spec...)...)
	if err == nil {
		return true, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		return false, nil
	}
	return false, err
}

// run runs iptables, waiting for its lock.
func (f *firewall) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, f.bin, append([]string{"-w", "5"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", &iptablesError{args: args, stderr: strings.TrimSpace(stderr.String()), err: err}
	}
	return string(out), nil
}

// iptablesError names the command and keeps iptables' own message.
type iptablesError struct {
	args   []string
	stderr string
	err    error
}

func (e *iptablesError) Error() string {
	return fmt.Sprintf("iptables %s: %v: %s", strings.Join(e.args, " "), e.err, e.stderr)
}

func (e *iptablesError) Unwrap() error { return e.err }
