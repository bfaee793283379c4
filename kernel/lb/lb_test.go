package lb

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/nftables"

	"github.com/shoalhq/shoal/sdk"
)

// lab is a node with a bridge of tasks, and a second node ("remote")
// joined to it by a veth pair, with a task of its own; each routes the
// other's slice, as kernel/tasknet sets it up:
//
//	node   eth0 192.168.250.1/24, br0 10.200.3.1/24: t1 .7, t2 .8, t3 .9, client .20
//	remote eth0 192.168.250.2/24, br0 10.200.5.1/24: t4 .9
//
// Every task runs a backend on tcp/80 (t1 and t4 on udp/53 too).
type lab struct {
	node, remote *testNS
	client       *testNS
	tasks        map[string]netip.Addr
	lb           *Balancer
}

func newLab(t *testing.T) *lab {
	t.Helper()
	requireRoot(t)
	l := &lab{tasks: map[string]netip.Addr{}}
	l.node, l.remote = newNS(t, "node"), newNS(t, "remote")
	link(t, l.node, "eth0", netip.MustParsePrefix("192.168.250.1/24"), l.remote, "eth0", netip.MustParsePrefix("192.168.250.2/24"))
	bridge(t, l.node, "br0", netip.MustParsePrefix("10.200.3.1/24"))
	bridge(t, l.remote, "br0", netip.MustParsePrefix("10.200.5.1/24"))
	for _, n := range []*testNS{l.node, l.remote} {
		n.sysctl(t, "net.ipv4.ip_forward", "1")
		// With br_netfilter, conntrack sees the bridged replies of a
		// hairpin connection and undoes its DNAT; the rules must work
		// without it.
		if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err == nil {
			n.sysctl(t, "net.bridge.bridge-nf-call-iptables", "0")
		}
	}
	route(t, l.node, "10.200.5.0/24", netip.MustParseAddr("192.168.250.2"))
	// The node's default route gives its own connections to a VIP a
	// source address; the remote node does not route VIPs.
	route(t, l.node, "default", netip.MustParseAddr("192.168.250.2"))
	route(t, l.remote, "10.200.3.0/24", netip.MustParseAddr("192.168.250.1"))

	gwN, gwR := netip.MustParseAddr("10.200.3.1"), netip.MustParseAddr("10.200.5.1")
	for _, x := range []struct {
		name string
		on   *testNS
		addr string
		gw   netip.Addr
	}{
		{"t1", l.node, "10.200.3.7", gwN},
		{"t2", l.node, "10.200.3.8", gwN},
		{"t3", l.node, "10.200.3.9", gwN},
		{"t4", l.remote, "10.200.5.9", gwR},
	} {
		a := netip.MustParseAddr(x.addr)
		ns := task(t, x.on, "br0", x.name, a, x.gw)
		l.tasks[x.name] = a
		backend(t, ns, x.name, "tcp", ":80")
		if x.name == "t1" || x.name == "t4" {
			backend(t, ns, x.name, "udp", ":53")
		}
	}
	l.client = task(t, l.node, "br0", "tc", netip.MustParseAddr("10.200.3.20"), gwN)

	b, err := New(Config{NetNS: l.node.path()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	l.lb = b
	return l
}

func (l *lab) backends(port uint16, names ...string) []netip.AddrPort {
	var bs []netip.AddrPort
	for _, n := range names {
		bs = append(bs, netip.AddrPortFrom(l.tasks[n], port))
	}
	return bs
}

// services is the lab's desired state with web's backends named.
func (l *lab) services(web ...string) []Service {
	return []Service{
		{Name: "web", VIP: netip.MustParseAddr("10.96.0.5"), Ports: []Port{
			{Protocol: TCP, Port: 80, Published: 8080, Backends: l.backends(80, web...)},
		}},
		{Name: "dns", VIP: netip.MustParseAddr("10.96.0.6"), Ports: []Port{
			{Protocol: UDP, Port: 53, Backends: l.backends(53, "t1", "t4")},
		}},
		{Name: "empty", VIP: netip.MustParseAddr("10.96.0.7"), Ports: []Port{{Protocol: TCP, Port: 80}}},
	}
}

// dump is the table as nft shows it, "" without nft.
func (l *lab) dump(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		return ""
	}
	out, err := l.node.run("nft", "list", "table", "ip", DefaultTable)
	if err != nil {
		t.Fatalf("nft list table: %v: %s", err, out)
	}
	return out
}

// wantSpread checks that n dials reached every backend in want and no
// other, each at least a quarter of its fair share: with random choice,
// fewer is beyond any reasonable chance.
func wantSpread(t *testing.T, what string, got map[string]int, n int, want ...string) {
	t.Helper()
	for b := range got {
		if !slices.Contains(want, b) {
			t.Errorf("%s: reached %s (%d of %d), want only %v", what, b, got[b], n, want)
		}
	}
	for _, b := range want {
		if got[b] < n/len(want)/4 {
			t.Errorf("%s: %s reached %d times of %d, want about %d (spread %v)", what, b, got[b], n, n/len(want), got)
		}
	}
}

// wantClients checks which client address each backend saw.
func wantClients(t *testing.T, what string, got map[string]map[string]bool, want map[string]string) {
	t.Helper()
	for b, c := range want {
		if len(got[b]) != 1 || !got[b][c] {
			t.Errorf("%s: %s saw clients %v, want only %s", what, b, keys(got[b]), c)
		}
	}
}

func keys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestBalance syncs a VIP with backends on the node's bridge and on the
// remote node, a published port, a UDP VIP and a VIP without backends, and
// counts where connections go from each kind of client.
func TestBalance(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	all := []string{"t1", "t2", "t3", "t4"}
	if err := l.lb.Sync(ctx, l.services(all...)); err != nil {
		t.Fatal(err)
	}
	t.Logf("the table:\n%s", l.dump(t))
	if got := l.node.readSysctl(t, "net.ipv4.conf.all.route_localnet"); got != "1" {
		t.Errorf("route_localnet = %s, want 1", got)
	}

	const n = 200
	for _, c := range []struct {
		name    string
		from    *testNS
		network string
		addr    string
		want    []string
		clients map[string]string
	}{
		// Hairpin: the client shares the bridge with t1..t3, which see
		// the gateway; t4 on the other node sees the client itself.
		{"VIP from a task", l.client, "tcp", "10.96.0.5:80", all,
			map[string]string{"t1": "10.200.3.1", "t2": "10.200.3.1", "t3": "10.200.3.1", "t4": "10.200.3.20"}},
		{"VIP from the node", l.node, "tcp", "10.96.0.5:80", all,
			map[string]string{"t1": "192.168.250.1", "t4": "192.168.250.1"}},
		// The routing mesh is masqueraded: t4 answers the node, not the
		// remote host by its default route.
		{"published port from another host", l.remote, "tcp", "192.168.250.1:8080", all,
			map[string]string{"t1": "10.200.3.1", "t4": "192.168.250.1"}},
		{"published port on 127.0.0.1", l.node, "tcp", "127.0.0.1:8080", all,
			map[string]string{"t1": "10.200.3.1", "t4": "192.168.250.1"}},
		{"published port on the gateway from a task", l.client, "tcp", "10.200.3.1:8080", all, nil},
		{"published port on the node's address from a task", l.client, "tcp", "192.168.250.1:8080", all, nil},
		{"UDP VIP from a task", l.client, "udp", "10.96.0.6:53", []string{"t1", "t4"},
			map[string]string{"t1": "10.200.3.1", "t4": "10.200.3.20"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, clients := spread(t, c.from, c.network, c.addr, n)
			wantSpread(t, c.name, got, n, c.want...)
			wantClients(t, c.name, clients, c.clients)
		})
	}

	t.Run("VIP without backends refuses", func(t *testing.T) {
		_, _, err := dial(l.client, "tcp", "10.96.0.7:80", false)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("dial a VIP without backends = %v, want connection refused", err)
		}
	})
	t.Run("a port the VIP does not have is not balanced", func(t *testing.T) {
		// 10.96.0.5:81 goes by the default route to the remote node,
		// which refuses it (nothing listens there): not a backend.
		_, _, err := dial(l.client, "tcp", "10.96.0.5:81", false)
		if err == nil {
			t.Error("dial 10.96.0.5:81 succeeded")
		}
	})
}

// TestRemoveBackend: a backend taken out of the state gets no new
// connection, and the connection it has keeps flowing.
func TestRemoveBackend(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	if err := l.lb.Sync(ctx, l.services("t1", "t2", "t3", "t4")); err != nil {
		t.Fatal(err)
	}
	// Hold a connection to t1: random choice gets there soon.
	var held *reply
	for i := 0; i < 500 && held == nil; i++ {
		r, c, err := dial(l.client, "tcp", "10.96.0.5:80", true)
		if err != nil {
			t.Fatal(err)
		}
		if r.backend == "t1" {
			held = &r
			t.Cleanup(func() { c.Close() })
			defer func() {
				// After the Sync below: the held connection still reaches t1.
				if _, err := c.Write([]byte("again\n")); err != nil {
					t.Fatalf("write on the held connection: %v", err)
				}
				buf := make([]byte, 16)
				k, err := c.Read(buf)
				if err != nil || strings.TrimSpace(string(buf[:k])) != "t1" {
					t.Errorf("held connection answered %q, %v; want t1", buf[:k], err)
				}
			}()
			continue
		}
		c.Close()
	}
	if held == nil {
		t.Fatal("500 connections never reached t1")
	}

	if err := l.lb.Sync(ctx, l.services("t2", "t3", "t4")); err != nil {
		t.Fatal(err)
	}
	const n = 150
	got, _ := spread(t, l.client, "tcp", "10.96.0.5:80", n)
	wantSpread(t, "VIP after removing t1", got, n, "t2", "t3", "t4")
	got, _ = spread(t, l.remote, "tcp", "192.168.250.1:8080", n)
	wantSpread(t, "published port after removing t1", got, n, "t2", "t3", "t4")
}

// TestBadSyncChangesNothing: a Sync with bad input is refused whole, and
// the rules of the last good one stay.
func TestBadSyncChangesNothing(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	if err := l.lb.Sync(ctx, l.services("t1", "t4")); err != nil {
		t.Fatal(err)
	}
	before := l.dump(t)
	bad := append(l.services("t1", "t2", "t3", "t4"),
		Service{Name: "other", Ports: []Port{{Protocol: TCP, Port: 80, Published: 8080, Backends: l.backends(80, "t2")}}})
	err := l.lb.Sync(ctx, bad)
	if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "services[3].ports[0].published") {
		t.Fatalf("Sync with a published port used twice = %v, want an invalid argument naming services[3].ports[0].published", err)
	}
	if after := l.dump(t); after != before {
		t.Errorf("the table changed:\n%s\nwas:\n%s", after, before)
	}
	const n = 60
	got, _ := spread(t, l.client, "tcp", "10.96.0.5:80", n)
	wantSpread(t, "VIP after a bad Sync", got, n, "t1", "t4")
}

// TestClose removes the table and puts route_localnet back; Sync then
// fails.
func TestClose(t *testing.T) {
	requireRoot(t)
	ns := newNS(t, "node")
	b, err := New(Config{NetNS: ns.path(), Table: "shoal-close"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc := []Service{{Name: "web", VIP: netip.MustParseAddr("10.96.0.5"), Ports: []Port{
		{Protocol: TCP, Port: 80, Published: 8080, Backends: []netip.AddrPort{netip.MustParseAddrPort("10.200.3.7:80")}},
	}}}
	for range 2 { // a second Sync replaces the table
		if err := b.Sync(context.Background(), svc); err != nil {
			t.Fatal(err)
		}
	}
	tables := func() []string {
		c, err := nftables.New(nftables.WithNetNSFd(int(ns.h)))
		if err != nil {
			t.Fatal(err)
		}
		ts, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, x := range ts {
			names = append(names, x.Name)
		}
		return names
	}
	if got := tables(); !slices.Equal(got, []string{"shoal-close"}) {
		t.Errorf("tables after Sync = %v, want [shoal-close]", got)
	}
	if got := ns.readSysctl(t, "net.ipv4.conf.all.route_localnet"); got != "1" {
		t.Errorf("route_localnet after Sync = %s, want 1", got)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := tables(); len(got) != 0 {
		t.Errorf("tables after Close = %v, want none", got)
	}
	if got := ns.readSysctl(t, "net.ipv4.conf.all.route_localnet"); got != "0" {
		t.Errorf("route_localnet after Close = %s, want 0 as it was", got)
	}
	if err := b.Sync(context.Background(), svc); !errors.Is(err, ErrClosed) {
		t.Errorf("Sync after Close = %v, want ErrClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// TestLargeSync applies the bounds' worth of backends on one port and
// many services in one transaction: the batch must fit the socket.
func TestLargeSync(t *testing.T) {
	requireRoot(t)
	ns := newNS(t, "node")
	b, err := New(Config{NetNS: ns.path()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	big := []Service{{Name: "big", VIP: netip.MustParseAddr("10.96.0.5"), Ports: []Port{
		{Protocol: TCP, Port: 80, Published: 8080, Backends: manyBackends(DefaultMaxBackends, 0)},
	}}}
	for i := range 2000 {
		big = append(big, Service{Name: fmt.Sprintf("s%d", i), VIP: netip.AddrFrom4([4]byte{10, 97, byte(i >> 8), byte(i)}), Ports: []Port{
			{Protocol: TCP, Port: 80, Backends: manyBackends(3, i)},
			{Protocol: UDP, Port: 53, Backends: manyBackends(3, i)},
		}})
	}
	if err := b.Sync(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	big[0].Ports[0].Backends = big[0].Ports[0].Backends[:10]
	if err := b.Sync(context.Background(), big); err != nil {
		t.Fatal(err)
	}
}

// manyBackends are n addresses in 10.200.0.0/16, from an offset.
func manyBackends(n, offset int) []netip.AddrPort {
	bs := make([]netip.AddrPort, n)
	for i := range bs {
		k := i + offset
		bs[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 200, byte(k / 250), byte(k%250 + 2)}), 80)
	}
	return bs
}

// BenchmarkSync1000Backends is the time to apply a 1,000-backend VIP
// (issue 12's target: at most 50 ms), alternating between two backend
// sets so that every Sync changes the map.
func BenchmarkSync1000Backends(b *testing.B) {
	requireRoot(b)
	ns := newNS(b, "node")
	lb, err := New(Config{NetNS: ns.path()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { lb.Close() })
	states := [2][]Service{}
	for i := range states {
		states[i] = []Service{{Name: "web", VIP: netip.MustParseAddr("10.96.0.5"), Ports: []Port{
			{Protocol: TCP, Port: 80, Published: 8080, Backends: manyBackends(1000, i)},
		}}}
	}
	ctx := context.Background()
	i := 0
	for b.Loop() {
		if err := lb.Sync(ctx, states[i%2]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
