package tasknet

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/shoalhq/shoal/sdk"
)

// Peer is another node's slice of a network: the tasks of NetworkID with
// addresses in NodeSubnet run on the node reached at NodeAddr.
type Peer struct {
	NodeID string
	// NodeAddr is the host IP other nodes reach the node at, e.g.
	// "192.168.1.12". It must be on a link this node shares (see doc.go).
	NodeAddr  string
	NetworkID string
	// NodeSubnet is the node's slice of the network, e.g. "10.200.5.0/24".
	NodeSubnet string
}

// routeProtocol tags the host routes tasknet owns (rtm_protocol), so it finds
// them in the kernel after a restart and never touches anyone else's. 115 is
// not in iproute2's rt_protos nor used by the common routing daemons.
const routeProtocol netlink.RouteProtocol = 115

// peerRoute is a validated Peer.
type peerRoute struct {
	nodeID    string
	networkID string
	via       netip.Addr
	dst       netip.Prefix
}

// SetPeers replaces the set of other nodes' slices. For every peer slice of
// a network that has tasks on this node, the host gets the route
// "node_subnet via node_addr"; routes of peers no longer listed, or of
// networks that left the node, are deleted, and changed ones replaced. The
// set is kept: a network that later gets its first task here gets its routes
// then.
//
// SetPeers applies every valid peer. It returns an error of kind
// ErrInvalidArgument naming each peer it skipped (peers[i].field), joined
// with the errors of routes the kernel refused.
func (m *Manager) SetPeers(peers []Peer) error {
	valid, verr := validatePeers(peers)
	m.routeMu.Lock()
	defer m.routeMu.Unlock()
	m.peers = valid
	m.peersSet = true
	return errors.Join(verr, syncRoutes(m.log, m.activeNetworks(), m.peers))
}

// validatePeers checks peers and returns the valid ones in a deterministic
// order, with an error naming each one skipped.
func validatePeers(peers []Peer) ([]peerRoute, error) {
	var fe sdk.FieldErrors
	valid := make([]peerRoute, 0, len(peers))
	for i, p := range peers {
		f := fmt.Sprintf("peers[%d]", i)
		before := len(fe)
		if p.NodeID == "" {
			fe.Add(f+".node_id", "is required")
		}
		if p.NetworkID == "" {
			fe.Add(f+".network_id", "is required")
		}
		via, err := netip.ParseAddr(p.NodeAddr)
		switch {
		case err != nil:
			fe.Add(f+".node_addr", "%q is not an IP address", p.NodeAddr)
		case !via.Is4():
			fe.Add(f+".node_addr", "%s is not IPv4: only IPv4 networks are supported", via)
		case via.IsUnspecified() || via.IsLoopback() || via.IsMulticast():
			fe.Add(f+".node_addr", "%s is not an address another node can be reached at", via)
		}
		dst, _ := parseIPv4Prefix(&fe, f+".node_subnet", p.NodeSubnet)
		if len(fe) == before {
			valid = append(valid, peerRoute{nodeID: p.NodeID, networkID: p.NetworkID, via: via, dst: dst})
		}
	}
	// Deterministic: when two peers claim one slice, the first by node ID
	// wins until the other goes.
	slices.SortFunc(valid, func(a, b peerRoute) int {
		return cmp.Or(cmp.Compare(a.nodeID, b.nodeID), a.dst.Addr().Compare(b.dst.Addr()), cmp.Compare(a.dst.Bits(), b.dst.Bits()))
	})
	return valid, fe.Err()
}

// Local is one of this node's slices, for a Router.
type Local struct {
	NetworkID string
	// Subnet is the network's subnet, e.g. "10.200.0.0/16".
	Subnet string
	// NodeSubnet is this node's slice of it, e.g. "10.200.3.0/24".
	NodeSubnet string
}

// Router keeps the host's routes to other nodes' slices for a process that
// knows the node's slices but does not attach the tasks itself: the agent,
// whose executor plugin runs its own Manager. Managers leave routes alone
// until their SetPeers is called, so a Router and the plugin's Manager on
// one node do not undo each other's work; use one or the other for routes.
type Router struct {
	log *slog.Logger
	mu  sync.Mutex
}

// NewRouter returns a Router; logger may be nil.
func NewRouter(logger *slog.Logger) *Router {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Router{log: logger}
}

// Set makes the host's routes those to the peers' slices of the networks
// in locals (this node's slices), like Manager.SetPeers. It applies every
// valid entry and returns an error naming the invalid ones.
func (r *Router) Set(locals []Local, peers []Peer) error {
	var fe sdk.FieldErrors
	plans := make(map[string]netPlan, len(locals))
	for i, l := range locals {
		f := fmt.Sprintf("locals[%d]", i)
		if l.NetworkID == "" {
			fe.Add(f+".network_id", "is required")
			continue
		}
		sub, ok1 := parseIPv4Prefix(&fe, f+".subnet", l.Subnet)
		ns, ok2 := parseIPv4Prefix(&fe, f+".node_subnet", l.NodeSubnet)
		if ok1 && ok2 {
			plans[l.NetworkID] = netPlan{NetworkID: l.NetworkID, Subnet: sub, NodeSubnet: ns}
		}
	}
	valid, verr := validatePeers(peers)
	r.mu.Lock()
	defer r.mu.Unlock()
	return errors.Join(fe.Err(), verr, syncRoutes(r.log, plans, valid))
}

// syncRoutes brings the host routes in line with the peers and the networks
// that have tasks here.
func (m *Manager) syncRoutes() error {
	m.routeMu.Lock()
	defer m.routeMu.Unlock()
	if !m.peersSet {
		return nil // routes are kept by a Router, or not at all
	}
	return syncRoutes(m.log, m.activeNetworks(), m.peers)
}

// syncRoutes makes tasknet's host routes those to the peers' slices of the
// networks in locals.
func syncRoutes(log *slog.Logger, locals map[string]netPlan, peers []peerRoute) error {
	var errs []error
	want := map[netip.Prefix]peerRoute{}
	for _, p := range peers {
		l, ok := locals[p.networkID]
		if !ok {
			continue
		}
		switch {
		case p.dst.Bits() < l.Subnet.Bits() || !l.Subnet.Contains(p.dst.Addr()):
			errs = append(errs, fmt.Errorf("peer %s: slice %s of network %s is outside the network's subnet %s: %w", p.nodeID, p.dst, p.networkID, l.Subnet, sdk.ErrInvalidArgument))
			continue
		case p.dst == l.NodeSubnet:
			// This node's own slice, as gossip reports it.
			continue
		case p.dst.Overlaps(l.NodeSubnet):
			errs = append(errs, fmt.Errorf("peer %s: slice %s of network %s overlaps this node's slice %s: %w", p.nodeID, p.dst, p.networkID, l.NodeSubnet, sdk.ErrInvalidArgument))
			continue
		}
		if w, dup := want[p.dst]; dup {
			if w.via != p.via {
				log.Warn("two nodes claim one slice; routing to the first", "network_id", p.networkID, "node_subnet", p.dst.String(), "node_id", w.nodeID, "other_node_id", p.nodeID)
			}
			continue
		}
		want[p.dst] = p
	}
	if len(want) > 0 {
		if err := enableForwarding(); err != nil {
			errs = append(errs, err)
		}
	}

	have, err := ownRoutes()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, r := range have {
		dst := prefixOf(r.Dst)
		w, ok := want[dst]
		if ok && addrOf(r.Gw) == w.via {
			delete(want, dst)
			continue
		}
		if ok {
			continue // replaced below
		}
		if err := netlink.RouteDel(&r); err != nil {
			errs = append(errs, fmt.Errorf("delete route %s via %s: %w", dst, addrOf(r.Gw), err))
		}
	}
	for dst, w := range want {
		r := &netlink.Route{Dst: ipNet(dst), Gw: net.IP(w.via.AsSlice()), Protocol: routeProtocol}
		if err := netlink.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s (node %s, network %s): %w: routing between nodes needs them on a shared link", dst, w.via, w.nodeID, w.networkID, err))
			continue
		}
		log.Debug("route to peer slice", "network_id", w.networkID, "node_id", w.nodeID, "node_subnet", dst.String(), "node_addr", w.via.String())
	}
	return errors.Join(errs...)
}

// deleteRoutesIn deletes tasknet's routes inside subnet (a network that
// left the node).
func (m *Manager) deleteRoutesIn(subnet netip.Prefix) error {
	m.routeMu.Lock()
	defer m.routeMu.Unlock()
	if !m.peersSet {
		return nil // routes are kept by a Router, or not at all
	}
	have, err := ownRoutes()
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range have {
		if dst := prefixOf(r.Dst); subnet.Overlaps(dst) {
			if err := netlink.RouteDel(&r); err != nil {
				errs = append(errs, fmt.Errorf("delete route %s: %w", dst, err))
			}
		}
	}
	return errors.Join(errs...)
}

// ownRoutes lists the IPv4 routes of the main table tagged routeProtocol.
func ownRoutes() ([]netlink.Route, error) {
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	return rs, nil
}

// enableForwarding turns on IPv4 forwarding, which routing between the
// bridge and the node's links needs.
func enableForwarding() error {
	const path = "/proc/sys/net/ipv4/ip_forward"
	if b, err := os.ReadFile(path); err == nil && len(b) > 0 && b[0] == '1' {
		return nil
	}
	if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("enable IPv4 forwarding: %w", err)
	}
	return nil
}

func prefixOf(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	a, _ := netip.AddrFromSlice(n.IP)
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
