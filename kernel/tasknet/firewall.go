package tasknet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The chains shoal owns. Each is jumped to from the built-in chain once;
// the rules inside are per network, tagged with a comment naming it, or
// (inputChain) per peer reached over the overlay.
const (
	forwardChain = "SHOAL-FORWARD"
	natChain     = "SHOAL-POSTROUTING"
	inputChain   = "SHOAL-INPUT"
)

// overlayComment tags the overlay's rules in inputChain.
const overlayComment = "shoal-overlay"

// overlayRecheck is how long the overlay's rules, once checked, are taken
// as they were left when the peers did not change: the periodic resync
// (every 30 s) checks them again, and repairs a rule deleted by hand,
// without an iptables run at every gossip change. A variable for the
// tests, which check a repair at once.
var overlayRecheck = 20 * time.Second

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
//   - filter INPUT (inputChain, kept by syncOverlay): VXLAN packets (UDP
//     vxlanPort) from the peers reached over the overlay are accepted, so
//     the overlay works on hosts whose INPUT policy is DROP, and only from
//     them: VXLAN carries no authentication, and a decapsulated packet
//     would pass the FORWARD rules above like a task's. (On a host whose
//     INPUT policy is ACCEPT, anyone reaching the port can send into the
//     overlay, as with any VXLAN; keep it behind the cluster's firewall.)
//
// Forwarding through the VXLAN device needs no rule of its own: every
// packet on it has a source in a network's subnet (a task's address, or
// the device's own, see syncVXLANAddrs) or is a reply, which the FORWARD
// rules above accept; an interface-wide accept would also forward
// whatever a VXLAN sender wraps to anywhere the node routes.
//
// It runs the iptables binary, as the CNI plugins do. Without one, no rules
// are kept: tasks still reach each other, but not the outside.
type firewall struct {
	bin string // "" when the node has no iptables

	// mu serializes rule changes: checking then appending is not atomic.
	mu sync.Mutex
	// overlay are the peer addresses inputChain accepts VXLAN from, sorted,
	// as syncOverlay last left them, at overlayChecked; overlayKnown is
	// false until it ran once.
	overlay        []netip.Addr
	overlayChecked time.Time
	overlayKnown   bool
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

// overlayRule accepts the overlay's packets from one peer.
func overlayRule(peer netip.Addr) []string {
	return []string{"-s", peer.String() + "/32", "-p", "udp", "-m", "udp", "--dport", strconv.Itoa(vxlanPort),
		"-m", "comment", "--comment", overlayComment, "-j", "ACCEPT"}
}

// syncOverlay makes inputChain accept VXLAN packets from exactly peers
// (their underlay addresses). Without peers the chain is emptied of the
// overlay's rules but kept, as the other chains are.
func (f *firewall) syncOverlay(peers []netip.Addr) error {
	if f.bin == "" {
		return nil
	}
	peers = slices.Clone(peers)
	slices.SortFunc(peers, netip.Addr.Compare)
	peers = slices.Compact(peers)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.overlayKnown && slices.Equal(f.overlay, peers) && (len(peers) == 0 || time.Since(f.overlayChecked) < overlayRecheck) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.syncOverlayLocked(ctx, peers); err != nil {
		f.overlayKnown = false
		return fmt.Errorf("firewall rules of the overlay: %w", err)
	}
	f.overlay, f.overlayChecked, f.overlayKnown = peers, time.Now(), true
	return nil
}

func (f *firewall) syncOverlayLocked(ctx context.Context, peers []netip.Addr) error {
	if len(peers) > 0 {
		if _, err := f.run(ctx, "-t", "filter", "-N", inputChain); err != nil && !strings.Contains(err.Error(), "exists") {
			return err
		}
		jump := rule{"filter", "INPUT", []string{"-j", inputChain}}
		if ok, err := f.exists(ctx, jump); err != nil {
			return err
		} else if !ok {
			if _, err := f.run(ctx, "-t", "filter", "-I", "INPUT", "1", "-j", inputChain); err != nil {
				return err
			}
		}
	}
	out, err := f.run(ctx, "-t", "filter", "-S", inputChain)
	if err != nil {
		var ee *exec.ExitError
		if len(peers) == 0 && errors.As(err, &ee) && ee.ExitCode() == 1 {
			return nil // no chain: nothing to remove
		}
		return err
	}
	// Rules are deleted by number, from the last, so the numbers of the
	// ones before stay right; only this process changes the chain.
	want := map[netip.Addr]bool{}
	for _, p := range peers {
		want[p] = true
	}
	var stale []int
	n := 0
	for line := range strings.Lines(out) {
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != "-A" || fields[1] != inputChain {
			continue
		}
		n++
		if !slices.Contains(fields, overlayComment) {
			continue // not ours
		}
		var src netip.Addr
		if i := slices.Index(fields, "-s"); i >= 0 && i+1 < len(fields) {
			if p, err := netip.ParsePrefix(fields[i+1]); err == nil && p.Bits() == 32 {
				src = p.Addr()
			}
		}
		if want[src] && slices.Contains(fields, strconv.Itoa(vxlanPort)) {
			delete(want, src)
			continue
		}
		stale = append(stale, n)
	}
	for _, i := range slices.Backward(stale) {
		if _, err := f.run(ctx, "-t", "filter", "-D", inputChain, strconv.Itoa(i)); err != nil {
			return err
		}
	}
	for _, p := range peers {
		if want[p] {
			if _, err := f.run(ctx, append([]string{"-t", "filter", "-A", inputChain}, overlayRule(p)...)...); err != nil {
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
