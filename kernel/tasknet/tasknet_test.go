package tasknet

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/shoalhq/shoal/sdk/netattach"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

const testNetID = "n0test0network0id0000000a" // 25 characters, like ids.New

// attachment is task taskAddr of slice 10.200.<slice>.0/24 of 10.200.0.0/16.
func attachment(slice, host int) *objectv1.NetworkAttachment {
	return &objectv1.NetworkAttachment{
		NetworkId:   testNetID,
		NetworkName: "backend",
		Addr:        ip4(10, 200, slice, host) + "/16",
		Subnet:      "10.200.0.0/16",
		NodeSubnet:  ip4(10, 200, slice, 0) + "/24",
		Gateway:     ip4(10, 200, slice, 1),
	}
}

func ip4(a, b, c, d int) string { return net.IPv4(byte(a), byte(b), byte(c), byte(d)).String() }

// TestTwoNodes attaches tasks on two nodes to one network and checks that
// they reach each other by their addresses across the nodes, that a
// published port reaches its task, that tasks reach outside the network
// masqueraded, and that detaching removes everything, also after a restart.
func TestTwoNodes(t *testing.T) {
	a, b := newTestNodes(t)
	// Docker's FORWARD policy: the overlay must get through it.
	a.run(t, "iptables", "-P", "FORWARD", "DROP")
	b.run(t, "iptables", "-P", "FORWARD", "DROP")

	ports := []*objectv1.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, Mode: objectv1.PublishMode_PUBLISH_MODE_HOST}}
	nsA := a.attach(t, "task-a", []*objectv1.NetworkAttachment{attachment(3, 7)}, ports)
	nsA2 := a.attach(t, "task-a2", []*objectv1.NetworkAttachment{attachment(3, 8)}, nil)
	nsB := b.attach(t, "task-b", []*objectv1.NetworkAttachment{attachment(5, 9)}, nil)

	if again := a.attach(t, "task-a", []*objectv1.NetworkAttachment{attachment(3, 7)}, ports); again != nsA {
		t.Errorf("second Attach(task-a) = %s, want %s", again, nsA)
	}

	peers := []Peer{
		{NodeID: "node-a", NodeAddr: a.addr, NetworkID: testNetID, NodeSubnet: "10.200.3.0/24"},
		{NodeID: "node-b", NodeAddr: b.addr, NetworkID: testNetID, NodeSubnet: "10.200.5.0/24"},
	}
	a.setPeers(t, peers...)
	b.setPeers(t, peers...)

	echoServer(t, nsA, "tcp", ":7000")
	echoServer(t, nsB, "tcp", ":7000")
	echoServer(t, nsA, "tcp", ":80")
	echoServer(t, b.ns, "tcp", b.addr+":9000")

	for _, c := range []struct {
		name, from, to, want string
	}{
		{"across nodes, a to b", nsA, "10.200.5.9:7000", "10.200.3.7"},
		{"across nodes, b to a", nsB, "10.200.3.7:7000", "10.200.5.9"},
		{"same node over the bridge", nsA2, "10.200.3.7:7000", "10.200.3.8"},
		{"published port from the other node", b.ns, a.addr + ":8080", b.addr},
		{"published port from its own node", a.ns, a.addr + ":8080", a.addr},
		{"published port on localhost, masqueraded", a.ns, "127.0.0.1:8080", "10.200.3.1"},
		{"published port from a task of the node, masqueraded", nsA2, a.addr + ":8080", "10.200.3.1"},
		{"outside the network, masqueraded", nsA, b.addr + ":9000", a.addr},
	} {
		got, err := dialFrom(c.from, c.to)
		if err != nil {
			t.Errorf("%s: dial %s: %v", c.name, c.to, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s: server saw the client as %s, want %s", c.name, got, c.want)
		}
	}

	// A restarted Manager finds its tasks: Attach is still idempotent, and
	// Detach undoes what the previous process did.
	a.restart(t)
	if again := a.attach(t, "task-a", []*objectv1.NetworkAttachment{attachment(3, 7)}, ports); again != nsA {
		t.Errorf("Attach(task-a) after restart = %s, want %s", again, nsA)
	}
	a.setPeers(t, peers...)
	if got, err := dialFrom(nsA, "10.200.5.9:7000"); err != nil || got != "10.200.3.7" {
		t.Errorf("after restart: a to b = %q, %v; want 10.200.3.7", got, err)
	}

	for _, id := range []string{"task-a", "task-a2"} {
		a.detach(t, id)
		a.detach(t, id) // idempotent
	}
	b.detach(t, "task-b")

	for _, n := range []*testNode{a, b} {
		h := n.handle(t)
		if _, err := h.LinkByName(netattach.BridgeName(testNetID)); err == nil {
			t.Errorf("node %s: bridge %s is still there", n.name, netattach.BridgeName(testNetID))
		}
		rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProtocol}, netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != 0 {
			t.Errorf("node %s: routes left: %v", n.name, rs)
		}
		for _, table := range []string{"filter", "nat"} {
			if out := n.run(t, "iptables", "-t", table, "-S"); strings.Contains(out, testNetID) || strings.Contains(out, "CNI-DN-") {
				t.Errorf("node %s: iptables %s rules left:\n%s", n.name, table, out)
			}
		}
		ents, _ := os.ReadDir(n.stateDir + "/netns")
		if len(ents) != 0 {
			t.Errorf("node %s: namespaces left: %v", n.name, ents)
		}
	}
	if got, err := dialFrom(b.ns, a.addr+":8080"); err == nil {
		t.Errorf("published port still answers after Detach (server saw %s)", got)
	}
}

// gateways returns tasknet's routes in h's namespace: the gateway of
// each destination.
func gateways(t *testing.T, h *netlink.Handle) map[string]string {
	t.Helper()
	rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range rs {
		got[r.Dst.String()] = r.Gw.String()
	}
	return got
}

// TestSetPeersRoutes checks that the Router, given peers as an agent gives
// them (its slices from the tasks attached), replaces a changed route, removes
// one of a peer that left, applies the valid peers when others are invalid,
// and keeps the peers for a network whose first task comes later.
func TestSetPeersRoutes(t *testing.T) {
	a, _ := newTestNodes(t)
	h := a.handle(t)
	check := func(step string, want map[string]string) {
		t.Helper()
		got := gateways(t, h)
		if len(got) != len(want) {
			t.Errorf("%s: routes = %v, want %v", step, got, want)
			return
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: routes = %v, want %v", step, got, want)
				return
			}
		}
	}

	// Peers before the network has tasks here: no routes yet.
	a.setPeers(t, Peer{NodeID: "b", NodeAddr: "192.168.250.2", NetworkID: testNetID, NodeSubnet: "10.200.5.0/24"})
	check("no local task", nil)
	a.attach(t, "t1", []*objectv1.NetworkAttachment{attachment(3, 7)}, nil)
	check("first task", map[string]string{"10.200.5.0/24": "192.168.250.2"})

	a.setPeers(t,
		Peer{NodeID: "b", NodeAddr: "192.168.250.3", NetworkID: testNetID, NodeSubnet: "10.200.5.0/24"},
		Peer{NodeID: "c", NodeAddr: "192.168.250.4", NetworkID: testNetID, NodeSubnet: "10.200.6.0/24"},
		Peer{NodeID: "d", NodeAddr: "192.168.250.5", NetworkID: "other", NodeSubnet: "10.201.6.0/24"},
	)
	check("changed and added", map[string]string{"10.200.5.0/24": "192.168.250.3", "10.200.6.0/24": "192.168.250.4"})

	resp := a.call(t, helperReq{Op: "peers", Peers: []Peer{
		{NodeID: "c", NodeAddr: "192.168.250.4", NetworkID: testNetID, NodeSubnet: "10.200.6.0/24"},
		{NodeID: "x", NodeAddr: "not-an-ip", NetworkID: testNetID, NodeSubnet: "10.200.7.0/24"},
		{NodeID: "y", NodeAddr: "192.168.250.6", NetworkID: testNetID, NodeSubnet: "0.0.0.0/0"},
	}})
	for _, want := range []string{"peers[1].node_addr", "outside the network's subnet"} {
		if !strings.Contains(resp.Err, want) {
			t.Errorf("Router.Set with bad peers = %q, want it to name %q", resp.Err, want)
		}
	}
	check("b left, bad peers skipped", map[string]string{"10.200.6.0/24": "192.168.250.4"})

	a.detach(t, "t1")
	check("last task gone", nil)
}

// TestRouterLeavesManagersAlone: an agent's Router keeps the routes while
// the executor's Manager, never given peers, attaches and detaches tasks
// without touching them.
func TestRouterLeavesManagersAlone(t *testing.T) {
	a, _ := newTestNodes(t)
	h := a.handle(t)
	local := Local{NetworkID: testNetID, Subnet: "10.200.0.0/16", NodeSubnet: "10.200.3.0/24"}
	peer := Peer{NodeID: "b", NodeAddr: "192.168.250.2", NetworkID: testNetID, NodeSubnet: "10.200.5.0/24"}
	route := func(locals []Local, peers ...Peer) helperResp {
		return a.call(t, helperReq{Op: "route", Locals: locals, Peers: peers})
	}
	if resp := route([]Local{local}, peer); resp.Err != "" {
		t.Fatal(resp.Err)
	}
	if got := gateways(t, h); got["10.200.5.0/24"] != "192.168.250.2" || len(got) != 1 {
		t.Fatalf("routes after Router.Set = %v, want 10.200.5.0/24 via 192.168.250.2", got)
	}
	a.attach(t, "t1", []*objectv1.NetworkAttachment{attachment(3, 7)}, nil)
	a.detach(t, "t1")
	if got := gateways(t, h); got["10.200.5.0/24"] != "192.168.250.2" || len(got) != 1 {
		t.Fatalf("routes after the Manager attached and detached a task = %v, want the Router's route kept", got)
	}
	resp := route([]Local{local, {NetworkID: "x", Subnet: "nonsense", NodeSubnet: "10.1.0.0/24"}})
	if !strings.Contains(resp.Err, "locals[1].subnet") {
		t.Errorf("Router.Set with a bad local = %q, want it to name locals[1].subnet", resp.Err)
	}
	if got := gateways(t, h); len(got) != 0 {
		t.Fatalf("routes after the peer left = %v, want none", got)
	}
}

// TestAttachRejects checks that conflicting input changes nothing.
func TestAttachRejects(t *testing.T) {
	a, _ := newTestNodes(t)
	a.attach(t, "t1", []*objectv1.NetworkAttachment{attachment(3, 7)}, nil)

	other := attachment(4, 7) // another slice for the same network on this node
	resp := a.call(t, helperReq{Op: "attach", TaskID: "t2", Nets: []*objectv1.NetworkAttachment{other}})
	if !strings.Contains(resp.Err, "failed precondition") || !strings.Contains(resp.Err, "networks[0]") {
		t.Errorf("Attach with another slice = %q, want a failed precondition naming networks[0]", resp.Err)
	}
	resp = a.call(t, helperReq{Op: "attach", TaskID: "t1", Nets: []*objectv1.NetworkAttachment{attachment(3, 9)}})
	if !strings.Contains(resp.Err, "detach it first") {
		t.Errorf("Attach(t1) with another address = %q, want detach it first", resp.Err)
	}
	pub := []*objectv1.PortConfig{{TargetPort: 80, PublishedPort: 8080}}
	a.attach(t, "p1", []*objectv1.NetworkAttachment{attachment(3, 20)}, pub)
	resp = a.call(t, helperReq{Op: "attach", TaskID: "p2", Nets: []*objectv1.NetworkAttachment{attachment(3, 21)}, Ports: pub})
	if !strings.Contains(resp.Err, "ports[0].published_port") || !strings.Contains(resp.Err, "task p1") {
		t.Errorf("Attach publishing a port in use = %q, want ports[0].published_port naming task p1", resp.Err)
	}
	a.detach(t, "p1")
	ents, _ := os.ReadDir(a.stateDir + "/netns")
	if len(ents) != 1 {
		t.Errorf("namespaces = %d, want 1", len(ents))
	}
	a.detach(t, "t1")
}

// TestConcurrentAttach attaches tasks at once to a network new on the node
// (all racing to set up its bridge and rules), checks they reach each
// other, and detaches them at once.
func TestConcurrentAttach(t *testing.T) {
	a, _ := newTestNodes(t)
	const n = 12
	resp := a.call(t, helperReq{Op: "attach-many", TaskID: "c", Nets: []*objectv1.NetworkAttachment{attachment(3, 7)}, Many: n})
	if resp.Err != "" {
		t.Fatalf("attach %d at once: %s", n, resp.Err)
	}
	ns := func(i int) string { return a.stateDir + "/netns/c-" + strconv.Itoa(i) }
	echoServer(t, ns(0), "tcp", ":7000")
	for i := 1; i < n; i++ {
		if got, err := dialFrom(ns(i), "10.200.3.10:7000"); err != nil || got != ip4(10, 200, 3, 10+i) {
			t.Errorf("task c-%d to c-0 = %q, %v; want seen as %s", i, got, err, ip4(10, 200, 3, 10+i))
		}
	}
	if resp := a.call(t, helperReq{Op: "detach-many", TaskID: "c", Many: n}); resp.Err != "" {
		t.Fatalf("detach %d at once: %s", n, resp.Err)
	}
	if _, err := a.handle(t).LinkByName(netattach.BridgeName(testNetID)); err == nil {
		t.Errorf("bridge still there after the last task left")
	}
}

// BenchmarkAttach100 attaches 100 tasks to one network at once on a node,
// as a 100-replica service on one node does, and detaches them. It reports
// the time until all are attached, and per task.
func BenchmarkAttach100(b *testing.B) {
	a, _ := newTestNodes(b)
	const n = 100
	var total time.Duration
	for b.Loop() {
		resp := a.call(b, helperReq{Op: "attach-many", TaskID: "bench", Nets: []*objectv1.NetworkAttachment{attachment(3, 7)}, Many: n})
		if resp.Err != "" {
			b.Fatal(resp.Err)
		}
		total += resp.Elapsed
		if resp := a.call(b, helperReq{Op: "detach-many", TaskID: "bench", Many: n}); resp.Err != "" {
			b.Fatal(resp.Err)
		}
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/100_attached")
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N*n), "ms/task")
}

// TestAfterReboot: the namespaces are gone but the records stay (a reboot,
// or someone unmounted them). Detach still cleans up, including the
// published port's rules, and Attach starts over.
func TestAfterReboot(t *testing.T) {
	a, b := newTestNodes(t)
	ports := []*objectv1.PortConfig{{TargetPort: 80, PublishedPort: 8080}}
	nsA := a.attach(t, "t1", []*objectv1.NetworkAttachment{attachment(3, 7)}, ports)
	a.attach(t, "t2", []*objectv1.NetworkAttachment{attachment(3, 8)}, nil)
	a.stop(t)
	for _, id := range []string{"t1", "t2"} {
		if err := unix.Unmount(a.stateDir+"/netns/"+id, unix.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
	}
	a.start(t)

	if again := a.attach(t, "t2", []*objectv1.NetworkAttachment{attachment(3, 8)}, nil); again == "" {
		t.Fatal("Attach(t2) after reboot gave no namespace")
	}
	a.detach(t, "t1")
	if out := a.run(t, "iptables", "-t", "nat", "-S"); strings.Contains(out, "CNI-DN-") {
		t.Errorf("published port rules left after Detach:\n%s", out)
	}
	if _, err := os.Stat(nsA); !os.IsNotExist(err) {
		t.Errorf("namespace file %s left: %v", nsA, err)
	}
	// t2 is attached anew and works.
	echoServer(t, a.stateDir+"/netns/t2", "tcp", ":7000")
	if got, err := dialFrom(a.ns, "10.200.3.8:7000"); err != nil || got != "10.200.3.1" {
		t.Errorf("node to t2 after re-attach = %q, %v; want seen as the gateway 10.200.3.1", got, err)
	}
	_ = b
	a.detach(t, "t2")
}
