package tasknet

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/shoalhq/shoal/sdk"
)

// The VXLAN overlay (doc.go, "Between nodes"): one device per node for
// every network, tasks' packets wrapped in UDP between the nodes' underlay
// addresses.
const (
	// vxlanDevice is the node's VXLAN device.
	vxlanDevice = "shoal.vx"
	// vxlanVNI is the overlay's VXLAN network identifier, the same on
	// every node and for every network: networks are told apart by their
	// addresses (each slice is routed to one node), not by VNI, as
	// flannel's single VNI does for its one network. It matters only to
	// other VXLAN devices on the same UDP port, which share the kernel's
	// socket and must each have their own VNI: it is below 4096, where
	// Docker swarm's overlay and Calico (both on 4789 too) allocate theirs,
	// and not 1, flannel's default.
	vxlanVNI = 4000
	// vxlanPort is the overlay's UDP port: 4789, the one IANA assigned to
	// VXLAN (RFC 7348), which firewalls and NICs' offloads know, rather
	// than Linux's default 8472, which predates the assignment. A firewall
	// between the nodes must let it through (UDP, both ways).
	vxlanPort = 4789
	// vxlanOverhead is what the encapsulation adds to a task's packet:
	// outer IPv4 header (20), UDP (8), VXLAN (8) and the inner Ethernet
	// header (14). The device's MTU is the underlay's less this.
	vxlanOverhead = 50
)

// underlay is this node's end of the overlay: its ID, the address the
// other nodes reach it at (the VXLAN device's local address) and its VTEP
// MAC.
type underlay struct {
	nodeID string
	addr   netip.Addr
	mac    net.HardwareAddr
}

// maxNodeIDLen bounds a node ID, as long as any ID shoal makes and more.
const maxNodeIDLen = 128

// newUnderlay validates SetUnderlay's arguments.
func newUnderlay(nodeID, addr string) (*underlay, error) {
	var fe sdk.FieldErrors
	switch {
	case nodeID == "":
		fe.Add("node_id", "is required")
	case len(nodeID) > maxNodeIDLen:
		fe.Add("node_id", "is %d characters, at most %d are allowed", len(nodeID), maxNodeIDLen)
	}
	a, err := netip.ParseAddr(addr)
	switch {
	case err != nil:
		fe.Add("addr", "%q is not an IP address", addr)
	case !a.Is4():
		fe.Add("addr", "%s is not IPv4: the overlay runs over IPv4 only", a)
	case a.IsUnspecified() || a.IsLoopback() || a.IsMulticast():
		fe.Add("addr", "%s is not an address other nodes can reach this one at", a)
	}
	if err := fe.Err(); err != nil {
		return nil, fmt.Errorf("tasknet: underlay: %w", err)
	}
	return &underlay{nodeID: nodeID, addr: a, mac: vtepMAC(nodeID)}, nil
}

// vtepMAC is a node's VTEP MAC, derived from its node ID so that it stays
// the same across restarts of the agent (the other nodes' entries keep
// working meanwhile): a hash of the ID, made unicast and locally
// administered. Two node IDs giving one MAC (a chance of about n²/2⁴⁷)
// is reported by the nodes that see both, which do not tunnel to the
// second.
func vtepMAC(nodeID string) net.HardwareAddr {
	h := sha256.Sum256([]byte("shoal vtep\x00" + nodeID))
	mac := net.HardwareAddr(h[:6:6])
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}

// parseVTEPMAC parses a peer's VTEP MAC: a unicast Ethernet address.
func parseVTEPMAC(s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(s)
	switch {
	case err != nil || len(mac) != 6:
		return nil, fmt.Errorf("%q is not a MAC address", s)
	case mac[0]&1 != 0:
		return nil, fmt.Errorf("%s is a multicast address", mac)
	case slices.Equal(mac, make(net.HardwareAddr, 6)):
		return nil, errors.New("is the zero address")
	}
	return mac, nil
}

// reach is how this node reaches a peer's node address.
type reach struct {
	onLink bool   // a direct route: routing "via" the address works
	err    error  // no route at all, or the address is this node's
	how    string // for errors: the route the kernel chose
}

// reachOf asks the kernel how it would send to addr: on-link when the route
// has no gateway (the address is on a link this node is on), otherwise
// through a router, which a "via" route cannot use as next hop.
func reachOf(addr netip.Addr) reach {
	rs, err := listRetry(func() ([]netlink.Route, error) { return netlink.RouteGet(net.IP(addr.AsSlice())) })
	if err != nil {
		return reach{err: fmt.Errorf("no route to its node address %s: %w", addr, err)}
	}
	if len(rs) == 0 {
		return reach{err: fmt.Errorf("no route to its node address %s", addr)}
	}
	r := rs[0]
	switch {
	case r.Type == unix.RTN_LOCAL:
		return reach{err: fmt.Errorf("its node address %s is an address of this node", addr)}
	case r.Type != unix.RTN_UNICAST:
		return reach{err: fmt.Errorf("its node address %s is not routed (route type %d)", addr, r.Type)}
	case r.Gw == nil && len(r.MultiPath) == 0:
		return reach{onLink: true}
	}
	return reach{how: fmt.Sprintf("via %s", r.Gw)}
}

// vxPeer is one node reached over the overlay.
type vxPeer struct {
	nodeID string
	addr   netip.Addr // its underlay address: the FDB entry's destination
	mac    net.HardwareAddr
}

// ensureVXLAN makes the node's VXLAN device as u asks, or repairs it: VNI,
// port, local address and learning cannot change on a live device, so a
// device that differs in those is made again; its MAC and MTU are set in
// place. It returns the device, up, and whether it was made.
func ensureVXLAN(u *underlay) (_ netlink.Link, made bool, _ error) {
	under, err := underlayLink(u.addr)
	if err != nil {
		return nil, false, err
	}
	mtu := under.Attrs().MTU - vxlanOverhead
	l, err := netlink.LinkByName(vxlanDevice)
	switch {
	case err == nil:
		vx, ok := l.(*netlink.Vxlan)
		if !ok || vx.VxlanId != vxlanVNI || vx.Port != vxlanPort || addrOf(vx.SrcAddr) != u.addr || vx.Learning || vx.FlowBased {
			if err := netlink.LinkDel(l); err != nil {
				return nil, false, fmt.Errorf("delete %s, made otherwise: %w", vxlanDevice, err)
			}
			l = nil
		}
	case errors.As(err, new(netlink.LinkNotFoundError)):
		l = nil
	default:
		return nil, false, fmt.Errorf("find %s: %w", vxlanDevice, err)
	}
	if l == nil {
		vx := &netlink.Vxlan{
			LinkAttrs: netlink.LinkAttrs{Name: vxlanDevice, HardwareAddr: u.mac, MTU: mtu},
			VxlanId:   vxlanVNI,
			SrcAddr:   net.IP(u.addr.AsSlice()),
			Port:      vxlanPort,
			Learning:  false, // the FDB is gossip's, never learnt from packets
			UDPCSum:   true,
		}
		if err := netlink.LinkAdd(vx); err != nil {
			return nil, false, fmt.Errorf("make %s (VXLAN %d, local %s, port %d): %w", vxlanDevice, vxlanVNI, u.addr, vxlanPort, err)
		}
		made = true
		if l, err = netlink.LinkByName(vxlanDevice); err != nil {
			return nil, false, fmt.Errorf("find %s: %w", vxlanDevice, err)
		}
	}
	a := l.Attrs()
	if !slices.Equal(a.HardwareAddr, u.mac) {
		if err := netlink.LinkSetHardwareAddr(l, u.mac); err != nil {
			return nil, false, fmt.Errorf("set the MAC of %s: %w", vxlanDevice, err)
		}
	}
	if a.MTU != mtu {
		if err := netlink.LinkSetMTU(l, mtu); err != nil {
			return nil, false, fmt.Errorf("set the MTU of %s to %d: %w", vxlanDevice, mtu, err)
		}
	}
	if a.Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(l); err != nil {
			return nil, false, fmt.Errorf("bring %s up: %w", vxlanDevice, err)
		}
	}
	return l, made, nil
}

// underlayLink is the link holding the underlay address.
func underlayLink(addr netip.Addr) (netlink.Link, error) {
	as, err := listRetry(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range as {
		if addrOf(a.IP) == addr {
			l, err := netlink.LinkByIndex(a.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("find the link of %s: %w", addr, err)
			}
			return l, nil
		}
	}
	return nil, fmt.Errorf("the node's underlay address %s is on none of its links", addr)
}

// deleteVXLAN removes the device, and with it its addresses, neighbour and
// FDB entries and routes; deleted is false when there was none.
func deleteVXLAN() (deleted bool, _ error) {
	l, err := netlink.LinkByName(vxlanDevice)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("find %s: %w", vxlanDevice, err)
	}
	if err := netlink.LinkDel(l); err != nil {
		return false, fmt.Errorf("delete %s: %w", vxlanDevice, err)
	}
	return true, nil
}

// vxlanIndex is the device's index, 0 when there is none.
func vxlanIndex() int {
	if l, err := netlink.LinkByName(vxlanDevice); err == nil {
		return l.Attrs().Index
	}
	return 0
}

// syncVXLANAddrs gives the device this node's address on each network:
// its slice's first address (the network address, which no task has)
// with the network's prefix length, without a prefix route. The host's
// own packets into the overlay (the routing mesh's, masqueraded, among
// them) then leave from an address of this node's slice of their network
// (the kernel prefers the device's address whose prefix holds the next
// hop), which the peers route back through the overlay and let through
// their FORWARD rules like a task's.
func syncVXLANAddrs(vx netlink.Link, locals map[string]local) error {
	want := map[netip.Prefix]bool{}
	for _, l := range locals {
		want[netip.PrefixFrom(l.NodeSubnet.Addr(), l.Subnet.Bits())] = true
	}
	have, err := listRetry(func() ([]netlink.Addr, error) { return netlink.AddrList(vx, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("list the addresses of %s: %w", vxlanDevice, err)
	}
	var errs []error
	for _, a := range have {
		p := prefixOf(a.IPNet)
		if want[p] && a.Flags&unix.IFA_F_NOPREFIXROUTE != 0 {
			delete(want, p)
			continue
		}
		if err := netlink.AddrDel(vx, &a); err != nil {
			errs = append(errs, fmt.Errorf("delete address %s of %s: %w", p, vxlanDevice, err))
		}
	}
	for p := range want {
		a := &netlink.Addr{IPNet: ipNet(p), Flags: unix.IFA_F_NOPREFIXROUTE, Broadcast: net.IPv4zero}
		if err := netlink.AddrReplace(vx, a); err != nil {
			errs = append(errs, fmt.Errorf("address %s on %s: %w", p, vxlanDevice, err))
		}
	}
	return errors.Join(errs...)
}

// setFDB adds or corrects the forwarding entries of the peers: each peer's
// VTEP MAC goes to its underlay address. It returns the entries to delete
// once no route uses them.
func setFDB(vx int, peers map[string]vxPeer) (stale []netlink.Neigh, err error) {
	have, err := listRetry(func() ([]netlink.Neigh, error) { return netlink.NeighList(vx, unix.AF_BRIDGE) })
	if err != nil {
		return nil, fmt.Errorf("list the FDB of %s: %w", vxlanDevice, err)
	}
	ok := map[string]bool{}
	for _, n := range have {
		if n.IP == nil || len(n.HardwareAddr) != 6 || n.HardwareAddr[0]&1 != 0 {
			continue // not a unicast entry with a destination: not ours
		}
		key := n.HardwareAddr.String()
		p, want := peers[key]
		switch {
		case want && addrOf(n.IP) == p.addr && n.State&netlink.NUD_PERMANENT != 0 && !ok[key]:
			ok[key] = true
		case !want:
			stale = append(stale, n)
		}
	}
	var errs []error
	for key, p := range peers {
		if ok[key] {
			continue
		}
		n := &netlink.Neigh{LinkIndex: vx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT,
			IP: net.IP(p.addr.AsSlice()), HardwareAddr: p.mac}
		if err := netlink.NeighSet(n); err != nil {
			errs = append(errs, fmt.Errorf("FDB entry %s dst %s (node %s): %w", p.mac, p.addr, p.nodeID, err))
		}
	}
	return stale, errors.Join(errs...)
}

// setNeighbours adds or corrects the permanent neighbour entries of the
// routes' next hops (each peer slice's network address) to their node's
// VTEP MAC: the kernel never has to resolve them (nothing would answer).
// It returns the entries to delete once no route uses them.
func setNeighbours(vx int, hops map[netip.Addr]net.HardwareAddr) (stale []netlink.Neigh, err error) {
	have, err := listRetry(func() ([]netlink.Neigh, error) { return netlink.NeighList(vx, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("list the neighbours of %s: %w", vxlanDevice, err)
	}
	ok := map[netip.Addr]bool{}
	for _, n := range have {
		a := addrOf(n.IP)
		mac, want := hops[a]
		switch {
		case want && slices.Equal(n.HardwareAddr, mac) && n.State&netlink.NUD_PERMANENT != 0:
			ok[a] = true
		case !want:
			stale = append(stale, n)
		}
	}
	var errs []error
	for a, mac := range hops {
		if ok[a] {
			continue
		}
		n := &netlink.Neigh{LinkIndex: vx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, Type: unix.RTN_UNICAST,
			IP: net.IP(a.AsSlice()), HardwareAddr: mac}
		if err := netlink.NeighSet(n); err != nil {
			errs = append(errs, fmt.Errorf("neighbour %s lladdr %s on %s: %w", a, mac, vxlanDevice, err))
		}
	}
	return stale, errors.Join(errs...)
}

// deleteNeighbours deletes stale neighbour or FDB entries.
func deleteNeighbours(ns []netlink.Neigh) error {
	var errs []error
	for _, n := range ns {
		if err := netlink.NeighDel(&n); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete %s entry %s %s: %w", vxlanDevice, n.IP, n.HardwareAddr, err))
		}
	}
	return errors.Join(errs...)
}

// listRetry runs a netlink dump again when the kernel reports it was
// interrupted by a change (its result may then be incomplete).
func listRetry[T any](list func() ([]T, error)) ([]T, error) {
	var (
		out []T
		err error
	)
	for range 3 {
		out, err = list()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return out, err
}
