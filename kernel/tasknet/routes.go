package tasknet

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/hostnet"
)

// syncRoutes makes tasknet's host routes those to the peers' slices of the
// networks in locals: plain routes to the peers on a shared link, routes
// through the VXLAN device (with its neighbour and FDB entries, addresses
// and firewall rules) to the others; and removes whatever is no longer
// wanted, the device itself when no peer needs it. u is nil when the
// overlay is not configured.
func syncRoutes(log *slog.Logger, fw *firewall, u *underlay, locals map[string]local, peers []peerRoute) error {
	s := &routeSync{log: log, u: u, locals: locals}
	s.split(s.wanted(peers))
	if len(s.plain)+len(s.tunneled) > 0 {
		if err := hostnet.EnableForwarding(); err != nil {
			s.errs = append(s.errs, err)
		}
	}
	// The overlay first: entries before the routes that use them.
	vx, staleFDB, staleNeigh := s.overlay()
	if err := s.routes(vx); err != nil {
		return errors.Join(append(s.errs, err)...)
	}
	s.removeUnused(fw, staleFDB, staleNeigh)
	return errors.Join(s.errs...)
}

// routeSync is one run of syncRoutes: the routes it is to make, and the
// errors met so far, in the order they were met.
type routeSync struct {
	log    *slog.Logger
	u      *underlay // nil without an overlay
	locals map[string]local
	errs   []error

	plain    map[netip.Prefix]peerRoute // slices routed via a peer on a shared link
	tunneled map[netip.Prefix]peerRoute // slices routed over the VXLAN device
	vxPeers  map[string]vxPeer          // the tunneled slices' nodes, by VTEP MAC
}

// wanted returns the peers' slices of the local networks to route, one
// peer per slice, reporting the slices that cannot be routed.
func (s *routeSync) wanted(peers []peerRoute) map[netip.Prefix]peerRoute {
	want := map[netip.Prefix]peerRoute{}
	for _, p := range peers {
		l, ok := s.locals[p.networkID]
		if !ok {
			continue
		}
		switch {
		case p.dst.Bits() < l.Subnet.Bits() || !l.Subnet.Contains(p.dst.Addr()):
			s.errs = append(s.errs, fmt.Errorf("peer %s: slice %s of network %s is outside the network's subnet %s: %w", p.nodeID, p.dst, p.networkID, l.Subnet, sdk.ErrInvalidArgument))
			continue
		case p.dst == l.NodeSubnet:
			// This node's own slice, as gossip reports it.
			continue
		case p.dst.Overlaps(l.NodeSubnet):
			s.errs = append(s.errs, fmt.Errorf("peer %s: slice %s of network %s overlaps this node's slice %s: %w", p.nodeID, p.dst, p.networkID, l.NodeSubnet, sdk.ErrInvalidArgument))
			continue
		}
		if w, dup := want[p.dst]; dup {
			if w.via != p.via {
				s.log.Warn("two nodes claim one slice; routing to the first", "network_id", p.networkID, "node_subnet", p.dst.String(), "node_id", w.nodeID, "other_node_id", p.nodeID)
			}
			continue
		}
		want[p.dst] = p
	}
	return want
}

// split sorts the wanted slices into plain and tunneled, per peer node: a
// plain route when its address is on a shared link, the overlay
// otherwise. A node that can be reached neither way is reported once.
func (s *routeSync) split(want map[netip.Prefix]peerRoute) {
	reaches := map[netip.Addr]reach{}
	s.plain = map[netip.Prefix]peerRoute{}
	s.tunneled = map[netip.Prefix]peerRoute{}
	s.vxPeers = map[string]vxPeer{}
	badNode := map[string]bool{} // reported once per node
	report := func(p peerRoute, err error) {
		if !badNode[p.nodeID] {
			badNode[p.nodeID] = true
			s.errs = append(s.errs, fmt.Errorf("peer %s (%s): %w", p.nodeID, p.via, err))
		}
	}
	for _, dst := range sortedPrefixes(want) {
		p := want[dst]
		if inLocalSubnet(s.locals, p.via) {
			report(p, fmt.Errorf("its node address is inside a network's subnet: %w", sdk.ErrInvalidArgument))
			continue
		}
		r, ok := reaches[p.via]
		if !ok {
			r = reachOf(p.via)
			reaches[p.via] = r
		}
		if r.err == nil && r.onLink {
			s.plain[dst] = p
			continue
		}
		if err := s.tunnelable(p, r); err != nil {
			report(p, err)
			continue
		}
		s.vxPeers[p.mac.String()] = vxPeer{nodeID: p.nodeID, addr: p.via, mac: p.mac}
		s.tunneled[dst] = p
	}
}

// tunnelable says why p, reached as r and not on a shared link, cannot
// be routed over the overlay; nil if it can.
func (s *routeSync) tunnelable(p peerRoute, r reach) error {
	switch {
	case r.err != nil:
		return r.err
	case s.u == nil:
		return fmt.Errorf("not on a shared link (the route to it goes %s), and this node has no VXLAN underlay", r.how)
	case p.mac == nil:
		return fmt.Errorf("not on a shared link (the route to it goes %s), and it published no VTEP MAC", r.how)
	case slices.Equal(p.mac, s.u.mac):
		return fmt.Errorf("its VTEP MAC %s is this node's", p.mac)
	}
	if o, dup := s.vxPeers[p.mac.String()]; dup && (o.nodeID != p.nodeID || o.addr != p.via) {
		return fmt.Errorf("its VTEP MAC %s is also node %s's", p.mac, o.nodeID)
	}
	return nil
}

// overlay makes the VXLAN device and its addresses, FDB and neighbour
// entries for the tunneled slices. It returns the device's index (of the
// device about to go, if no slice is tunneled; 0 for none) and the stale
// FDB and neighbour entries to delete once the routes are in place. If
// the device cannot be made, the tunneled slices are not routed.
func (s *routeSync) overlay() (vx int, staleFDB, staleNeigh []netlink.Neigh) {
	if len(s.tunneled) == 0 {
		return vxlanIndex(), nil, nil // routes through a device about to go
	}
	u := s.u
	l, made, err := ensureVXLAN(u)
	if err != nil {
		s.errs = append(s.errs, fmt.Errorf("VXLAN overlay: %w: peers not on a shared link are not routed", err))
		s.tunneled, s.vxPeers = nil, nil
		return 0, nil, nil
	}
	if made {
		s.log.Info("VXLAN overlay device made, for peers not on a shared link", "device", vxlanDevice, "vni", vxlanVNI, "port", vxlanPort, "local", u.addr.String(), "vtep_mac", u.mac.String(), "mtu", l.Attrs().MTU)
	}
	vx = l.Attrs().Index
	if err := syncVXLANAddrs(l, s.locals); err != nil {
		s.errs = append(s.errs, err)
	}
	hops := make(map[netip.Addr]net.HardwareAddr, len(s.tunneled))
	for dst, p := range s.tunneled {
		hops[dst.Addr()] = p.mac
	}
	var err1, err2 error
	staleFDB, err1 = setFDB(vx, s.vxPeers)
	staleNeigh, err2 = setNeighbours(vx, hops)
	s.errs = append(s.errs, err1, err2)
	return vx, staleFDB, staleNeigh
}

// routes makes tasknet's routes the plain and tunneled ones (vx is the
// VXLAN device's index): it keeps those in place, deletes the others and
// adds or replaces the missing. The error is the listing's, which stops
// the sync; the others are in s.errs.
func (s *routeSync) routes(vx int) error {
	have, err := ownRoutes()
	if err != nil {
		return err
	}
	for _, r := range have {
		dst := prefixOf(r.Dst)
		if p, ok := s.plain[dst]; ok && addrOf(r.Gw) == p.via && (vx == 0 || r.LinkIndex != vx) {
			delete(s.plain, dst)
			continue
		}
		if _, ok := s.tunneled[dst]; ok && r.LinkIndex == vx && addrOf(r.Gw) == dst.Addr() && r.Flags&int(netlink.FLAG_ONLINK) != 0 {
			delete(s.tunneled, dst)
			continue
		}
		if _, ok := s.plain[dst]; ok {
			continue // replaced below
		}
		if _, ok := s.tunneled[dst]; ok {
			continue // replaced below
		}
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			s.errs = append(s.errs, fmt.Errorf("delete route %s via %s: %w", dst, addrOf(r.Gw), err))
		}
	}
	s.replaceRoutes(vx)
	return nil
}

// replaceRoutes adds or replaces the plain and tunneled routes not in
// place.
func (s *routeSync) replaceRoutes(vx int) {
	for dst, p := range s.plain {
		r := &netlink.Route{Dst: ipNet(dst), Gw: net.IP(p.via.AsSlice()), Protocol: routeProtocol}
		if err := netlink.RouteReplace(r); err != nil {
			s.errs = append(s.errs, fmt.Errorf("route %s via %s (node %s, network %s): %w", dst, p.via, p.nodeID, p.networkID, err))
			continue
		}
		s.log.Debug("route to peer slice", "network_id", p.networkID, "node_id", p.nodeID, "node_subnet", dst.String(), "node_addr", p.via.String())
	}
	for dst, p := range s.tunneled {
		// The next hop is the slice's network address, on-link on the
		// device: its permanent neighbour entry gives the peer's VTEP MAC,
		// and the FDB that MAC's underlay address.
		r := &netlink.Route{Dst: ipNet(dst), Gw: net.IP(dst.Addr().AsSlice()), LinkIndex: vx, Flags: int(netlink.FLAG_ONLINK), Protocol: routeProtocol}
		if err := netlink.RouteReplace(r); err != nil {
			s.errs = append(s.errs, fmt.Errorf("route %s via %s dev %s onlink (node %s at %s, network %s): %w", dst, dst.Addr(), vxlanDevice, p.nodeID, p.via, p.networkID, err))
			continue
		}
		s.log.Debug("route to peer slice over VXLAN", "network_id", p.networkID, "node_id", p.nodeID, "node_subnet", dst.String(), "node_addr", p.via.String(), "vtep_mac", p.mac.String())
	}
}

// removeUnused deletes what no route uses any more: the VXLAN device when
// no peer needs it, else its stale entries; and opens the firewall to the
// overlay's peers only.
func (s *routeSync) removeUnused(fw *firewall, staleFDB, staleNeigh []netlink.Neigh) {
	if len(s.vxPeers) == 0 {
		if deleted, err := deleteVXLAN(); err != nil {
			s.errs = append(s.errs, err)
		} else if deleted {
			s.log.Info("VXLAN overlay device deleted: no peer needs it", "device", vxlanDevice)
		}
	} else {
		s.errs = append(s.errs, deleteNeighbours(staleNeigh), deleteNeighbours(staleFDB))
	}
	addrs := make([]netip.Addr, 0, len(s.vxPeers))
	for _, p := range s.vxPeers {
		addrs = append(addrs, p.addr)
	}
	if err := fw.syncOverlay(addrs); err != nil {
		s.errs = append(s.errs, err)
	}
}

// inLocalSubnet reports whether a is inside one of the networks' subnets.
func inLocalSubnet(locals map[string]local, a netip.Addr) bool {
	for _, l := range locals {
		if l.Subnet.Contains(a) {
			return true
		}
	}
	return false
}

// sortedPrefixes are m's keys in order, so that conflicts resolve the same
// way every time.
func sortedPrefixes[V any](m map[netip.Prefix]V) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	return out
}

// ownRoutes lists the IPv4 routes of the main table tagged routeProtocol.
func ownRoutes() ([]netlink.Route, error) {
	rs, err := listRetry(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProtocol}, netlink.RT_FILTER_PROTOCOL)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	return rs, nil
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
