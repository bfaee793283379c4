package tasknet

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/shoalhq/shoal/kernel/netnstest"
	"github.com/shoalhq/shoal/sdk/hostnet"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func TestVTEPMAC(t *testing.T) {
	a, b := vtepMAC("node-a"), vtepMAC("node-b")
	if !slices.Equal(a, vtepMAC("node-a")) {
		t.Errorf("vtepMAC(node-a) differs between calls: %s, %s", a, vtepMAC("node-a"))
	}
	if slices.Equal(a, b) {
		t.Errorf("vtepMAC gives node-a and node-b the same MAC %s", a)
	}
	for _, id := range []string{"node-a", "node-b", "", strings.Repeat("x", 128), "6w8a1d9z0q7t3u5c2k4m"} {
		mac := vtepMAC(id)
		if len(mac) != 6 || mac[0]&1 != 0 || mac[0]&2 == 0 {
			t.Errorf("vtepMAC(%q) = %s, want a unicast, locally administered MAC", id, mac)
		}
		if _, err := parseVTEPMAC(mac.String()); err != nil {
			t.Errorf("parseVTEPMAC(vtepMAC(%q)) = %v", id, err)
		}
	}
	for _, bad := range []string{"", "nope", "01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "0a:1b:2c:3d:4e:5f:60:71"} {
		if _, err := parseVTEPMAC(bad); err == nil {
			t.Errorf("parseVTEPMAC(%q) = nil, want an error", bad)
		}
	}
}

func TestNewUnderlay(t *testing.T) {
	u, err := newUnderlay("node-a", "192.168.1.12")
	if err != nil || u.addr.String() != "192.168.1.12" || !slices.Equal(u.mac, vtepMAC("node-a")) {
		t.Fatalf("newUnderlay(node-a, 192.168.1.12) = %+v, %v", u, err)
	}
	for _, c := range []struct{ id, addr, field string }{
		{"", "192.168.1.12", "node_id"},
		{strings.Repeat("x", 129), "192.168.1.12", "node_id"},
		{"a", "nope", "addr"},
		{"a", "fd00::1", "addr"},
		{"a", "127.0.0.1", "addr"},
		{"a", "0.0.0.0", "addr"},
		{"a", "224.0.0.1", "addr"},
	} {
		if _, err := newUnderlay(c.id, c.addr); err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("newUnderlay(%q, %q) = %v, want an error naming %s", c.id, c.addr, err, c.field)
		}
	}
}

// newOverlayNodes makes three nodes: a and b on one LAN (a bridge in a
// namespace of its own, 192.168.250.0/24), c on another (192.168.249.0/24),
// behind a router namespace with a leg on each; every node's default route
// goes through the router. Each node runs a Manager and a Router (the
// helper) and has the firewall of a careful host: INPUT and FORWARD
// policies DROP, INPUT accepting lo and replies.
func newOverlayNodes(t *testing.T) (a, b, c *testNode) {
	t.Helper()
	requireNetworking(t)
	dir := t.TempDir()
	mk := func(name, addr string) *testNode {
		return &testNode{name: name, ns: filepath.Join(dir, "node-"+name), addr: addr, stateDir: filepath.Join(dir, "state-"+name)}
	}
	a, b, c = mk("a", "192.168.250.1"), mk("b", "192.168.250.2"), mk("c", "192.168.249.3")
	r, lan := mk("r", ""), mk("lan", "")
	makeNamespaces(t, lan, r, a, b, c)
	lh, closeLan := nsHandle(t, lan)
	defer closeLan()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	must(t, "bridge", lh.LinkAdd(br))
	must(t, "bridge up", lh.LinkSetUp(br))
	for _, n := range []*testNode{lan, r, a, b, c} {
		h, done := nsHandle(t, n)
		lo, err := h.LinkByName("lo")
		must(t, "lo", err)
		must(t, "lo up", h.LinkSetUp(lo))
		done()
	}
	link(t, 1, vethEnd{a, "eth0", a.addr + "/24", false}, vethEnd{lan, "va", "", true})
	link(t, 2, vethEnd{b, "eth0", b.addr + "/24", false}, vethEnd{lan, "vb", "", true})
	link(t, 3, vethEnd{r, "eth0", "192.168.250.254/24", false}, vethEnd{lan, "vr", "", true})
	link(t, 4, vethEnd{r, "eth1", "192.168.249.254/24", false}, vethEnd{c, "eth0", c.addr + "/24", false})
	r.run(t, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
	for _, n := range []*testNode{a, b, c} {
		gw := "192.168.250.254"
		if n == c {
			gw = "192.168.249.254"
		}
		n.run(t, "ip", "route", "add", "default", "via", gw)
		n.run(t, "iptables", "-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
		n.run(t, "iptables", "-A", "INPUT", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
		n.run(t, "iptables", "-P", "INPUT", "DROP")
		n.run(t, "iptables", "-P", "FORWARD", "DROP")
		n.start(t)
	}
	return a, b, c
}

// makeNamespaces makes the nodes' namespaces; when the test ends, each
// node is stopped and its namespace removed.
func makeNamespaces(t testing.TB, nodes ...*testNode) {
	t.Helper()
	for _, n := range nodes {
		if err := hostnet.CreateNetns(n.ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			n.stop(t)
			unmountUnder(t, filepath.Join(n.stateDir, "netns"))
			if err := hostnet.RemoveNetns(n.ns); err != nil {
				t.Error(err)
			}
		})
	}
}

// nsHandle is a netlink handle inside n's namespace, and what closes it.
func nsHandle(t *testing.T, n *testNode) (*netlink.Handle, func()) {
	t.Helper()
	nsh, err := netns.GetFromPath(n.ns)
	if err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	return h, func() { h.Close(); nsh.Close() }
}

// must fails the test with what when err is not nil.
func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// vethEnd is one end of a veth pair: the node it goes to, its name and
// address there ("" for none), and whether it joins the LAN's bridge.
type vethEnd struct {
	n           *testNode
	name, addr  string
	toLANBridge bool
}

// link makes veth pair i on the host (unique names, as other runs may be
// making theirs), moves the ends into their namespaces and sets them up
// there.
func link(t *testing.T, i int, x, y vethEnd) {
	t.Helper()
	pid := os.Getpid() % 100000
	vx, vy := fmt.Sprintf("sto%d%dx", pid, i), fmt.Sprintf("sto%d%dy", pid, i)
	must(t, "veth", netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: vx}, PeerName: vy}))
	t.Cleanup(func() {
		for _, v := range []string{vx, vy} {
			if l, err := netlink.LinkByName(v); err == nil {
				_ = netlink.LinkDel(l)
			}
		}
	})
	x.setUp(t, vx)
	y.setUp(t, vy)
}

// setUp moves host device dev into the end's namespace and gives it the
// end's name, address and bridge.
func (e vethEnd) setUp(t *testing.T, dev string) {
	t.Helper()
	nsh, err := netns.GetFromPath(e.n.ns)
	must(t, "netns", err)
	l, err := netlink.LinkByName(dev)
	must(t, "find "+dev, err)
	must(t, "move "+dev, netlink.LinkSetNsFd(l, int(nsh)))
	nsh.Close()
	h, done := nsHandle(t, e.n)
	defer done()
	l, err = h.LinkByName(dev)
	must(t, "find "+dev+" in "+e.n.name, err)
	must(t, "rename", h.LinkSetName(l, e.name))
	if e.addr != "" {
		ad, err := netlink.ParseAddr(e.addr)
		must(t, "parse "+e.addr, err)
		must(t, "address "+e.addr, h.AddrAdd(l, ad))
	}
	if e.toLANBridge {
		br, err := h.LinkByName("br0")
		must(t, "br0", err)
		must(t, "enslave", h.LinkSetMaster(l, br))
	}
	must(t, "up", h.LinkSetUp(l))
}

// overlayLab is TestOverlay's three nodes (see newOverlayNodes), a task on
// each, and what each published.
type overlayLab struct {
	a, b, c       *testNode
	nsA, nsB, nsC string               // the tasks' namespaces
	macs          map[*testNode]string // VTEP MACs
	slice         map[*testNode]int    // third byte of each node's slice of 10.200.0.0/16
}

// newOverlayLab starts the nodes, attaches a task on each, gives each its
// underlay, and has every Router route to the other two.
func newOverlayLab(t *testing.T) *overlayLab {
	a, b, c := newOverlayNodes(t)
	l := &overlayLab{
		a: a, b: b, c: c,
		nsA:   a.attach(t, "task-a", []*objectv1.NetworkAttachment{attachment(3, 7)}, nil),
		nsB:   b.attach(t, "task-b", []*objectv1.NetworkAttachment{attachment(5, 9)}, nil),
		nsC:   c.attach(t, "task-c", []*objectv1.NetworkAttachment{attachment(6, 8)}, nil),
		macs:  map[*testNode]string{},
		slice: map[*testNode]int{a: 3, b: 5, c: 6},
	}
	for _, n := range []*testNode{a, b, c} {
		resp := n.call(t, helperReq{Op: "underlay", NodeID: "node-" + n.name, Addr: n.addr})
		if resp.Err != "" || resp.VTEPMAC != vtepMAC("node-"+n.name).String() {
			t.Fatalf("node %s: SetUnderlay = %q, %s; want MAC %s", n.name, resp.VTEPMAC, resp.Err, vtepMAC("node-"+n.name))
		}
		l.macs[n] = resp.VTEPMAC
	}
	for _, n := range []*testNode{a, b, c} {
		if err := l.set(t, n, l.all()...); err != "" {
			t.Fatalf("node %s: Router.Set = %s", n.name, err)
		}
	}
	return l
}

// peer is node n as the others see it.
func (l *overlayLab) peer(n *testNode) Peer {
	return Peer{NodeID: "node-" + n.name, NodeAddr: n.addr, NetworkID: testNetID, NodeSubnet: ip4(10, 200, l.slice[n], 0) + "/24", VTEPMAC: l.macs[n]}
}

// all is every node as a peer.
func (l *overlayLab) all() []Peer { return []Peer{l.peer(l.a), l.peer(l.b), l.peer(l.c)} }

// set calls node n's Router.Set with n's slice and peers, and returns its
// error's text.
func (l *overlayLab) set(t *testing.T, n *testNode, peers ...Peer) string {
	t.Helper()
	locals := []Local{{NetworkID: testNetID, Subnet: "10.200.0.0/16", NodeSubnet: ip4(10, 200, l.slice[n], 0) + "/24"}}
	return n.call(t, helperReq{Op: "route", Locals: locals, Peers: peers}).Err
}

// TestOverlay: of three nodes, a and b share a LAN and c is behind a
// router. The Routers route a and b to each other plainly and each of
// them to c over VXLAN (device, neighbour and FDB entries, addresses,
// firewall rules), through firewalls that drop what they were not told
// to accept; tasks reach each other both ways, with packets larger than
// the overlay's MTU, and the host reaches a task behind the router from
// its overlay address. A resync repairs entries deleted by hand; a peer
// that leaves takes its entries, and the last one the device; peers that
// cannot be tunneled to are reported.
func TestOverlay(t *testing.T) {
	l := newOverlayLab(t)
	l.checkRouted(t)
	l.checkReach(t)
	l.checkRepair(t)
	l.checkNotTunneled(t)
	l.checkLeave(t)
	for _, n := range []*testNode{l.a, l.b, l.c} {
		if err := n.call(t, helperReq{Op: "route"}).Err; err != "" {
			t.Errorf("node %s: Router.Set(nothing) = %s", n.name, err)
		}
		if _, err := n.handle(t).LinkByName(vxlanDevice); err == nil {
			t.Errorf("node %s: %s left after the last peer", n.name, vxlanDevice)
		}
		if rs := ownRoutesIn(t, n); len(rs) != 0 {
			t.Errorf("node %s: routes left: %v", n.name, rs)
		}
	}
	l.a.detach(t, "task-a")
	l.b.detach(t, "task-b")
	l.c.detach(t, "task-c")
}

// checkRouted checks that a and b route to each other plainly and to c
// over VXLAN, and c to both over VXLAN.
func (l *overlayLab) checkRouted(t *testing.T) {
	t.Helper()
	a, b, c := l.a, l.b, l.c
	for _, x := range []struct{ n, other *testNode }{{a, b}, {b, a}} {
		checkOverlay(t, x.n, l.macs[x.n], ip4(10, 200, l.slice[x.n], 0))
		if rs := ownRoutesIn(t, x.n); rs[ip4(10, 200, l.slice[x.other], 0)+"/24"] != "via "+x.other.addr {
			t.Errorf("node %s: routes %v, want %s's slice plainly via %s", x.n.name, rs, x.other.name, x.other.addr)
		}
		checkVXLANPeer(t, x.n, "10.200.6.0/24", l.macs[c], c.addr)
	}
	checkOverlay(t, c, l.macs[c], "10.200.6.0")
	checkVXLANPeer(t, c, "10.200.3.0/24", l.macs[a], a.addr)
	checkVXLANPeer(t, c, "10.200.5.0/24", l.macs[b], b.addr)
}

// checkReach checks that the tasks reach each other both ways, the nodes
// reach the tasks behind the router from their overlay addresses, and
// segments above the overlay's MTU pass (the tasks' interfaces have 1500).
func (l *overlayLab) checkReach(t *testing.T) {
	t.Helper()
	nsA, nsB, nsC := l.nsA, l.nsB, l.nsC
	echoServer(t, nsA, "tcp", ":7000")
	echoServer(t, nsB, "tcp", ":7000")
	echoServer(t, nsC, "tcp", ":7000")
	for _, x := range []struct {
		name, from, to, want string
	}{
		{"a to b, plain", nsA, "10.200.5.9:7000", "10.200.3.7"},
		{"a to c, VXLAN", nsA, "10.200.6.8:7000", "10.200.3.7"},
		{"c to a, VXLAN", nsC, "10.200.3.7:7000", "10.200.6.8"},
		{"c to b, VXLAN", nsC, "10.200.5.9:7000", "10.200.6.8"},
		{"b to c, VXLAN", nsB, "10.200.6.8:7000", "10.200.5.9"},
		{"node a to c's task, from its overlay address", l.a.ns, "10.200.6.8:7000", "10.200.3.0"},
		{"node c to a's task, from its overlay address", l.c.ns, "10.200.3.7:7000", "10.200.6.0"},
	} {
		got, err := dialFrom(x.from, x.to)
		if err != nil || got != x.want {
			t.Errorf("%s: %s saw the client as %q (%v), want %s", x.name, x.to, got, err, x.want)
		}
	}
	bulkServer(t, nsC, ":7001")
	bulkServer(t, nsA, ":7001")
	for _, x := range []struct{ name, from, to string }{
		{"a to c", nsA, "10.200.6.8:7001"},
		{"c to a", nsC, "10.200.3.7:7001"},
	} {
		if err := bulk(x.from, x.to, 4<<20); err != nil {
			t.Errorf("%s, 4 MiB each way over VXLAN: %v", x.name, err)
		}
	}
}

// checkRepair deletes and changes a's entries by hand and checks that
// they come back at the next sync.
func (l *overlayLab) checkRepair(t *testing.T) {
	t.Helper()
	a, b, c := l.a, l.b, l.c
	a.run(t, "ip", "neigh", "del", "10.200.6.0", "dev", vxlanDevice)
	a.run(t, "bridge", "fdb", "del", l.macs[c], "dev", vxlanDevice, "dst", c.addr)
	a.run(t, "ip", "route", "del", "10.200.6.0/24")
	a.run(t, "ip", "link", "set", vxlanDevice, "mtu", "1300")
	a.run(t, "iptables", "-F", inputChain)
	if err := l.set(t, a, l.all()...); err != "" {
		t.Fatalf("node a: Router.Set again = %s", err)
	}
	checkOverlay(t, a, l.macs[a], "10.200.3.0")
	checkVXLANPeer(t, a, "10.200.6.0/24", l.macs[c], c.addr)
	if rs := ownRoutesIn(t, a); rs["10.200.5.0/24"] != "via "+b.addr {
		t.Errorf("node a: routes after the repair %v, want b's slice plainly via %s", rs, b.addr)
	}
	if got, err := dialFrom(l.nsA, "10.200.6.8:7000"); err != nil || got != "10.200.3.7" {
		t.Errorf("a to c after the repair = %q, %v", got, err)
	}
}

// checkNotTunneled checks that peers that cannot be tunneled to are
// reported, and not routed.
func (l *overlayLab) checkNotTunneled(t *testing.T) {
	t.Helper()
	a, b, c := l.a, l.b, l.c
	noMAC := l.peer(c)
	noMAC.VTEPMAC = ""
	if err := l.set(t, a, l.peer(b), noMAC); !strings.Contains(err, "published no VTEP MAC") {
		t.Errorf("Router.Set with c without a MAC = %q, want it reported", err)
	}
	if rs := ownRoutesIn(t, a); rs["10.200.6.0/24"] != "" {
		t.Errorf("routes with c without a MAC = %v, want none to c", rs)
	}
	sameMAC := l.peer(c)
	sameMAC.VTEPMAC = l.macs[a]
	if err := l.set(t, a, l.peer(b), sameMAC); !strings.Contains(err, "this node's") {
		t.Errorf("Router.Set with c having a's MAC = %q, want it reported", err)
	}
	badMAC := l.peer(c)
	badMAC.VTEPMAC = "01:00:5e:00:00:01"
	if err := l.set(t, a, badMAC); !strings.Contains(err, "peers[0].vtep_mac") {
		t.Errorf("Router.Set with a multicast MAC = %q, want peers[0].vtep_mac named", err)
	}
	inside := l.peer(c)
	inside.NodeAddr = "10.200.9.1"
	if err := l.set(t, a, inside); !strings.Contains(err, "inside a network's subnet") {
		t.Errorf("Router.Set with c at an address of the network = %q, want it reported", err)
	}
}

// checkLeave checks that when c leaves a's view its entries go, and with
// them the device, which no other peer needs; and that when a leaves
// c's, b's entries stay and a's go.
func (l *overlayLab) checkLeave(t *testing.T) {
	t.Helper()
	a, b, c := l.a, l.b, l.c
	if err := l.set(t, a, l.peer(b)); err != "" {
		t.Fatalf("node a: Router.Set without c = %s", err)
	}
	if _, err := a.handle(t).LinkByName(vxlanDevice); err == nil {
		t.Errorf("node a: %s is still there without VXLAN peers", vxlanDevice)
	}
	if rs := ownRoutesIn(t, a); len(rs) != 1 || rs["10.200.5.0/24"] != "via "+b.addr {
		t.Errorf("node a: routes without c = %v, want only b's, plain", rs)
	}
	if out := a.run(t, "iptables", "-S", inputChain); strings.Contains(out, overlayComment) {
		t.Errorf("node a: overlay rules left without VXLAN peers:\n%s", out)
	}
	if err := l.set(t, c, l.peer(b)); err != "" {
		t.Fatalf("node c: Router.Set without a = %s", err)
	}
	checkVXLANPeer(t, c, "10.200.5.0/24", l.macs[b], b.addr)
	hc := c.handle(t)
	vx, err := hc.LinkByName(vxlanDevice)
	if err != nil {
		t.Fatal(err)
	}
	if ns, _ := hc.NeighList(vx.Attrs().Index, netlink.FAMILY_V4); len(ns) != 1 {
		t.Errorf("node c: neighbours of %s after a left = %v, want b's only", vxlanDevice, ns)
	}
	if fdb := fdbOf(t, c); len(fdb) != 1 || fdb[l.macs[b]] != b.addr {
		t.Errorf("node c: FDB after a left = %v, want b's only", fdb)
	}
	if out := c.run(t, "iptables", "-S", inputChain); strings.Contains(out, a.addr) || !strings.Contains(out, b.addr) {
		t.Errorf("node c: overlay rules after a left:\n%s", out)
	}
}

// checkOverlay checks a node's VXLAN device: VNI, port, local address,
// learning, MAC, MTU, and its overlay address.
func checkOverlay(t *testing.T, n *testNode, mac, overlayAddr string) {
	t.Helper()
	h := n.handle(t)
	l, err := h.LinkByName(vxlanDevice)
	if err != nil {
		t.Fatalf("node %s: %s: %v", n.name, vxlanDevice, err)
	}
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		t.Fatalf("node %s: %s is a %s", n.name, vxlanDevice, l.Type())
	}
	if vx.VxlanId != vxlanVNI || vx.Port != vxlanPort || vx.SrcAddr.String() != n.addr || vx.Learning ||
		vx.HardwareAddr.String() != mac || vx.MTU != 1500-vxlanOverhead || vx.Flags&net.FlagUp == 0 {
		t.Errorf("node %s: %s is VNI %d port %d local %s learning %v MAC %s MTU %d flags %v; want VNI %d port %d local %s no learning MAC %s MTU %d up",
			n.name, vxlanDevice, vx.VxlanId, vx.Port, vx.SrcAddr, vx.Learning, vx.HardwareAddr, vx.MTU, vx.Flags,
			vxlanVNI, vxlanPort, n.addr, mac, 1500-vxlanOverhead)
	}
	as, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 || as[0].IPNet.String() != overlayAddr+"/16" || as[0].Flags&unix.IFA_F_NOPREFIXROUTE == 0 {
		t.Errorf("node %s: addresses of %s = %v, want %s/16 noprefixroute", n.name, vxlanDevice, as, overlayAddr)
	}
}

// checkVXLANPeer checks the route of one peer slice through the device,
// its next hop's neighbour entry, the peer's FDB entry and the firewall's
// accept of its VXLAN packets.
func checkVXLANPeer(t *testing.T, n *testNode, slice, mac, addr string) {
	t.Helper()
	hop := strings.TrimSuffix(slice, "/24")
	if rs := ownRoutesIn(t, n); rs[slice] != "via "+hop+" dev "+vxlanDevice+" onlink" {
		t.Errorf("node %s: route to %s is %q, want via %s dev %s onlink (all: %v)", n.name, slice, rs[slice], hop, vxlanDevice, rs)
	}
	h := n.handle(t)
	l, err := h.LinkByName(vxlanDevice)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := h.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(ns, func(x netlink.Neigh) bool {
		return x.IP.String() == hop && x.HardwareAddr.String() == mac && x.State&netlink.NUD_PERMANENT != 0
	}) {
		t.Errorf("node %s: neighbours of %s = %v, want %s lladdr %s permanent", n.name, vxlanDevice, ns, hop, mac)
	}
	if fdb := fdbOf(t, n); fdb[mac] != addr {
		t.Errorf("node %s: FDB of %s = %v, want %s dst %s", n.name, vxlanDevice, fdb, mac, addr)
	}
	if out := n.run(t, "iptables", "-S", inputChain); !strings.Contains(out, "-s "+addr+"/32 -p udp -m udp --dport 4789") {
		t.Errorf("node %s: %s does not accept VXLAN from %s:\n%s", n.name, inputChain, addr, out)
	}
	if out := n.run(t, "iptables", "-S", "INPUT"); !strings.Contains(out, "-A INPUT -j "+inputChain) {
		t.Errorf("node %s: INPUT does not jump to %s:\n%s", n.name, inputChain, out)
	}
}

// ownRoutesIn reads tasknet's routes of a node as dst: "via GW" for a
// plain route, "via GW dev shoal.vx onlink" for one through the overlay.
func ownRoutesIn(t *testing.T, n *testNode) map[string]string {
	t.Helper()
	h := n.handle(t)
	rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	vx := 0
	if l, err := h.LinkByName(vxlanDevice); err == nil {
		vx = l.Attrs().Index
	}
	out := map[string]string{}
	for _, r := range rs {
		s := "via " + r.Gw.String()
		if vx != 0 && r.LinkIndex == vx {
			s += " dev " + vxlanDevice
			if r.Flags&int(netlink.FLAG_ONLINK) != 0 {
				s += " onlink"
			}
		}
		out[r.Dst.String()] = s
	}
	return out
}

// fdbOf reads the unicast FDB entries of a node's VXLAN device, MAC: dst.
func fdbOf(t *testing.T, n *testNode) map[string]string {
	t.Helper()
	h := n.handle(t)
	l, err := h.LinkByName(vxlanDevice)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := h.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, x := range ns {
		if x.IP != nil && len(x.HardwareAddr) == 6 && x.HardwareAddr[0]&1 == 0 {
			out[x.HardwareAddr.String()] = x.IP.String()
		}
	}
	return out
}

// bulkServer listens inside a namespace; each connection's bytes are
// counted until the client closes its side, then as many are sent back.
func bulkServer(t testing.TB, nsPath, addr string) {
	t.Helper()
	serveIn(t, nsPath, "tcp", addr, func(c net.Conn) {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		n, err := io.Copy(io.Discard, c)
		if err != nil {
			return
		}
		_, _ = io.CopyN(c, &patternReader{}, n)
	})
}

// bulk sends n bytes to a bulkServer from inside a namespace and checks
// that n bytes of the pattern come back.
func bulk(nsPath, addr string, n int64) error {
	var c net.Conn
	if err := netnstest.DoAt(nsPath, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 10*time.Second)
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.CopyN(c, &patternReader{}, n); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("receive after %d bytes: %w", len(got), err)
	}
	want, _ := io.ReadAll(io.LimitReader(&patternReader{}, n))
	if !bytes.Equal(got, want) {
		return fmt.Errorf("got %d bytes back, want the %d sent", len(got), n)
	}
	return nil
}

// patternReader gives the bytes 0, 1, ..., 250, 0, 1, ... (a period
// prime to every segment size), never ending.
type patternReader struct{ off int }

func (r *patternReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r.off % 251)
		r.off++
	}
	return len(p), nil
}
