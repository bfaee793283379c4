package tasknet

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/hostnet"
)

// Peer is another node's slice of a network: the tasks of NetworkID with
// addresses in NodeSubnet run on the node reached at NodeAddr.
type Peer struct {
	NodeID string
	// NodeAddr is the host IP other nodes reach the node at, e.g.
	// "192.168.1.12": the next hop of its slices when it is on a link this
	// node shares, the destination of their VXLAN packets otherwise (see
	// doc.go).
	NodeAddr  string
	NetworkID string
	// NodeSubnet is the node's slice of the network, e.g. "10.200.5.0/24".
	NodeSubnet string
	// VTEPMAC is the MAC of the node's VXLAN device, e.g.
	// "0a:1b:2c:3d:4e:5f" (gossip.PeerInfo.VTEPMAC): needed only when the
	// node is not on a shared link. Empty for none.
	VTEPMAC string
}

// Bounds on the input of Router.Set: well above a cluster's
// (1,000 nodes with a slice of each of 64 networks), well below what would
// make one call hold the kernel's tables for long. Over a bound, nothing
// is changed.
const (
	maxPeers  = 1 << 16
	maxLocals = 4096
)

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
	mac       net.HardwareAddr // nil when the peer gave none
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
		dst, _ := hostnet.ParseIPv4Prefix(&fe, f+".node_subnet", p.NodeSubnet)
		var mac net.HardwareAddr
		if p.VTEPMAC != "" {
			if mac, err = parseVTEPMAC(p.VTEPMAC); err != nil {
				fe.Add(f+".vtep_mac", "%v", err)
			}
		}
		if len(fe) == before {
			valid = append(valid, peerRoute{nodeID: p.NodeID, networkID: p.NetworkID, via: via, dst: dst, mac: mac})
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

// local is a validated Local.
type local struct {
	Subnet, NodeSubnet netip.Prefix
}

// Router keeps the host's routes to other nodes' slices, for the agent: it
// knows the node's slices from its tasks, while its executor plugin
// attaches the tasks (sdk/netattach), which never touches these routes.
// The Router also keeps the VXLAN overlay (doc.go) and its firewall rules.
type Router struct {
	log *slog.Logger
	fw  *firewall

	mu       sync.Mutex
	underlay *underlay // nil until SetUnderlay
}

// NewRouter returns a Router; logger may be nil.
func NewRouter(logger *slog.Logger) *Router {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Router{log: logger, fw: newFirewall()}
}

// SetUnderlay gives the Router this node's ID and underlay address: the
// IPv4 address the other nodes reach it at (its gossip address), which the
// VXLAN device sends from and receives at. It returns the node's VTEP MAC,
// which the other nodes need (gossip publishes it): derived from the node
// ID, the same after a restart. Until it is called, peers not on a shared
// link are reported, not routed.
func (r *Router) SetUnderlay(nodeID, addr string) (vtepMAC string, err error) {
	u, err := newUnderlay(nodeID, addr)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.underlay = u
	return u.mac.String(), nil
}

// Set makes the host's routes those to the peers' slices of the networks
// in locals (this node's slices, those it has tasks on). For every such
// peer slice the host gets a route: "node_subnet via node_addr" when the
// peer's node address is on a link this node is on, otherwise one through
// the VXLAN overlay (which needs SetUnderlay first, and the peer's VTEP
// MAC; see doc.go). Routes of peers no longer listed, or of networks no
// longer in locals, are deleted, and changed ones replaced.
//
// Set applies every valid entry. It returns an error of kind
// ErrInvalidArgument naming each entry it skipped (locals[i].field,
// peers[i].field), joined with the errors of peers it cannot reach and of
// routes the kernel refused. Over the bounds (4,096 locals, 65,536 peers)
// it changes nothing.
func (r *Router) Set(locals []Local, peers []Peer) error {
	if len(locals) > maxLocals || len(peers) > maxPeers {
		return fmt.Errorf("tasknet: %d locals and %d peers, at most %d and %d are allowed: %w", len(locals), len(peers), maxLocals, maxPeers, sdk.ErrInvalidArgument)
	}
	var fe sdk.FieldErrors
	plans := make(map[string]local, len(locals))
	for i, l := range locals {
		f := fmt.Sprintf("locals[%d]", i)
		if l.NetworkID == "" {
			fe.Add(f+".network_id", "is required")
			continue
		}
		sub, ok1 := hostnet.ParseIPv4Prefix(&fe, f+".subnet", l.Subnet)
		ns, ok2 := hostnet.ParseIPv4Prefix(&fe, f+".node_subnet", l.NodeSubnet)
		if ok1 && ok2 {
			plans[l.NetworkID] = local{Subnet: sub, NodeSubnet: ns}
		}
	}
	valid, verr := validatePeers(peers)
	r.mu.Lock()
	defer r.mu.Unlock()
	return errors.Join(fe.Err(), verr, syncRoutes(r.log, r.fw, r.underlay, plans, valid))
}

// syncRoutes makes tasknet's host routes those to the peers' slices of the
// networks in locals: plain routes to the peers on a shared link, routes
// through the VXLAN device (with its neighbour and FDB entries, addresses
// and firewall rules) to the others; and removes whatever is no longer
// wanted, the device itself when no peer needs it. u is nil when the
// overlay is not configured.
func syncRoutes(log *slog.Logger, fw *firewall, u *underlay, locals map[string]local, peers []peerRoute) error {
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

	// Per peer node: a plain route when its address is on a shared link,
	// the overlay otherwise.
	reaches := map[netip.Addr]reach{}
	plain := map[netip.Prefix]peerRoute{}
	tunneled := map[netip.Prefix]peerRoute{}
	vxPeers := map[string]vxPeer{} // by VTEP MAC
	badNode := map[string]bool{}   // reported once per node
	report := func(p peerRoute, err error) {
		if !badNode[p.nodeID] {
			badNode[p.nodeID] = true
			errs = append(errs, fmt.Errorf("peer %s (%s): %w", p.nodeID, p.via, err))
		}
	}
	for _, dst := range sortedPrefixes(want) {
		p := want[dst]
		if inLocalSubnet(locals, p.via) {
			report(p, fmt.Errorf("its node address is inside a network's subnet: %w", sdk.ErrInvalidArgument))
			continue
		}
		r, ok := reaches[p.via]
		if !ok {
			r = reachOf(p.via)
			reaches[p.via] = r
		}
		switch {
		case r.err != nil:
			report(p, r.err)
			continue
		case r.onLink:
			plain[dst] = p
			continue
		case u == nil:
			report(p, fmt.Errorf("not on a shared link (the route to it goes %s), and this node has no VXLAN underlay", r.how))
			continue
		case p.mac == nil:
			report(p, fmt.Errorf("not on a shared link (the route to it goes %s), and it published no VTEP MAC", r.how))
			continue
		case slices.Equal(p.mac, u.mac):
			report(p, fmt.Errorf("its VTEP MAC %s is this node's", p.mac))
			continue
		}
		key := p.mac.String()
		if o, dup := vxPeers[key]; dup && (o.nodeID != p.nodeID || o.addr != p.via) {
			report(p, fmt.Errorf("its VTEP MAC %s is also node %s's", p.mac, o.nodeID))
			continue
		}
		vxPeers[key] = vxPeer{nodeID: p.nodeID, addr: p.via, mac: p.mac}
		tunneled[dst] = p
	}
	if len(plain)+len(tunneled) > 0 {
		if err := hostnet.EnableForwarding(); err != nil {
			errs = append(errs, err)
		}
	}

	// The overlay first: entries before the routes that use them.
	vx := 0
	var staleFDB, staleNeigh []netlink.Neigh
	if len(tunneled) > 0 {
		l, made, err := ensureVXLAN(u)
		if err != nil {
			errs = append(errs, fmt.Errorf("VXLAN overlay: %w: peers not on a shared link are not routed", err))
			tunneled, vxPeers = nil, nil
		} else {
			if made {
				log.Info("VXLAN overlay device made, for peers not on a shared link", "device", vxlanDevice, "vni", vxlanVNI, "port", vxlanPort, "local", u.addr.String(), "vtep_mac", u.mac.String(), "mtu", l.Attrs().MTU)
			}
			vx = l.Attrs().Index
			if err := syncVXLANAddrs(l, locals); err != nil {
				errs = append(errs, err)
			}
			hops := make(map[netip.Addr]net.HardwareAddr, len(tunneled))
			for dst, p := range tunneled {
				hops[dst.Addr()] = p.mac
			}
			var err1, err2 error
			staleFDB, err1 = setFDB(vx, vxPeers)
			staleNeigh, err2 = setNeighbours(vx, hops)
			errs = append(errs, err1, err2)
		}
	} else {
		vx = vxlanIndex() // routes through a device about to go
	}

	have, err := ownRoutes()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, r := range have {
		dst := prefixOf(r.Dst)
		if p, ok := plain[dst]; ok && addrOf(r.Gw) == p.via && (vx == 0 || r.LinkIndex != vx) {
			delete(plain, dst)
			continue
		}
		if _, ok := tunneled[dst]; ok && r.LinkIndex == vx && addrOf(r.Gw) == dst.Addr() && r.Flags&int(netlink.FLAG_ONLINK) != 0 {
			delete(tunneled, dst)
			continue
		}
		if _, ok := plain[dst]; ok {
			continue // replaced below
		}
		if _, ok := tunneled[dst]; ok {
			continue // replaced below
		}
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route %s via %s: %w", dst, addrOf(r.Gw), err))
		}
	}
	for dst, p := range plain {
		r := &netlink.Route{Dst: ipNet(dst), Gw: net.IP(p.via.AsSlice()), Protocol: routeProtocol}
		if err := netlink.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s (node %s, network %s): %w", dst, p.via, p.nodeID, p.networkID, err))
			continue
		}
		log.Debug("route to peer slice", "network_id", p.networkID, "node_id", p.nodeID, "node_subnet", dst.String(), "node_addr", p.via.String())
	}
	for dst, p := range tunneled {
		// The next hop is the slice's network address, on-link on the
		// device: its permanent neighbour entry gives the peer's VTEP MAC,
		// and the FDB that MAC's underlay address.
		r := &netlink.Route{Dst: ipNet(dst), Gw: net.IP(dst.Addr().AsSlice()), LinkIndex: vx, Flags: int(netlink.FLAG_ONLINK), Protocol: routeProtocol}
		if err := netlink.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s dev %s onlink (node %s at %s, network %s): %w", dst, dst.Addr(), vxlanDevice, p.nodeID, p.via, p.networkID, err))
			continue
		}
		log.Debug("route to peer slice over VXLAN", "network_id", p.networkID, "node_id", p.nodeID, "node_subnet", dst.String(), "node_addr", p.via.String(), "vtep_mac", p.mac.String())
	}

	// What no route uses any more.
	if len(vxPeers) == 0 {
		if deleted, err := deleteVXLAN(); err != nil {
			errs = append(errs, err)
		} else if deleted {
			log.Info("VXLAN overlay device deleted: no peer needs it", "device", vxlanDevice)
		}
	} else {
		errs = append(errs, deleteNeighbours(staleNeigh), deleteNeighbours(staleFDB))
	}
	addrs := make([]netip.Addr, 0, len(vxPeers))
	for _, p := range vxPeers {
		addrs = append(addrs, p.addr)
	}
	if err := fw.syncOverlay(addrs); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
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
