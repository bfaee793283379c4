package tasknet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoalhq/shoal/sdk/hostnet"
)

// inputChain is the node's chain in filter INPUT, jumped to once; the
// rules inside are one per peer reached over the overlay. (The executor's
// sdk/netattach keeps the per-network chains SHOAL-FORWARD and
// SHOAL-POSTROUTING.)
const inputChain = "SHOAL-INPUT"

// overlayComment tags the overlay's rules in inputChain.
const overlayComment = "shoal-overlay"

// overlayRecheck is how long the overlay's rules, once checked, are taken
// as they were left when the peers did not change: the periodic resync
// (every 30 s) checks them again, and repairs a rule deleted by hand,
// without an iptables run at every gossip change. A variable for the
// tests, which check a repair at once.
var overlayRecheck = 20 * time.Second

// firewall keeps the node's iptables rules of the overlay, in filter INPUT
// (inputChain): VXLAN packets (UDP vxlanPort) from the peers reached over
// the overlay are accepted, so the overlay works on hosts whose INPUT
// policy is DROP, and only from them: VXLAN carries no authentication, and
// a decapsulated packet would pass the FORWARD rules of the networks
// (sdk/netattach) like a task's. (On a host whose INPUT policy is ACCEPT,
// anyone reaching the port can send into the overlay, as with any VXLAN;
// keep it behind the cluster's firewall.)
//
// Forwarding through the VXLAN device needs no rule of its own: every
// packet on it has a source in a network's subnet (a task's address, or
// the device's own, see syncVXLANAddrs) or is a reply, which the networks'
// FORWARD rules accept; an interface-wide accept would also forward
// whatever a VXLAN sender wraps to anywhere the node routes.
//
// It runs the iptables binary, as the CNI plugins do. Without one, no rules
// are kept.
type firewall struct {
	ipt hostnet.Iptables

	// mu serializes rule changes: checking then appending is not atomic.
	mu sync.Mutex
	// overlay are the peer addresses inputChain accepts VXLAN from, sorted,
	// as syncOverlay last left them, at overlayChecked; overlayKnown is
	// false until it ran once.
	overlay        []netip.Addr
	overlayChecked time.Time
	overlayKnown   bool
}

func newFirewall() *firewall {
	return &firewall{ipt: hostnet.FindIptables()}
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
	if f.ipt.Bin == "" {
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
		if err := f.ipt.EnsureChain(ctx, "filter", inputChain, "INPUT"); err != nil {
			return err
		}
	}
	out, err := f.ipt.Run(ctx, "-t", "filter", "-S", inputChain)
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
		if _, err := f.ipt.Run(ctx, "-t", "filter", "-D", inputChain, strconv.Itoa(i)); err != nil {
			return err
		}
	}
	for _, p := range peers {
		if want[p] {
			if _, err := f.ipt.Run(ctx, append([]string{"-t", "filter", "-A", inputChain}, overlayRule(p)...)...); err != nil {
				return err
			}
		}
	}
	return nil
}
