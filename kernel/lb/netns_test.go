package lb

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/shoalhq/shoal/kernel/netnstest"
)

// requireRoot skips a test that cannot make network namespaces.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes network namespaces, links and nftables tables")
	}
}

// testNS is a network namespace of the test, with a name for messages.
type testNS struct {
	*netnstest.NS
	name string
}

// newNS makes an empty namespace with lo up. It is removed when the test
// ends.
func newNS(t testing.TB, name string) *testNS {
	t.Helper()
	return &testNS{NS: netnstest.NewNS(t), name: name}
}

// sysctl sets a /proc/sys/net value inside the namespace.
func (ns *testNS) sysctl(t testing.TB, key, value string) {
	t.Helper()
	if err := ns.Do(func() error {
		return os.WriteFile("/proc/sys/"+strings.ReplaceAll(key, ".", "/"), []byte(value), 0o644)
	}); err != nil {
		t.Fatalf("%s: sysctl %s=%s: %v", ns.name, key, value, err)
	}
}

func (ns *testNS) readSysctl(t testing.TB, key string) string {
	t.Helper()
	var v []byte
	if err := ns.Do(func() (err error) {
		v, err = os.ReadFile("/proc/sys/" + strings.ReplaceAll(key, ".", "/"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(v))
}

// run runs a command inside the namespace (nft, to show the table).
func (ns *testNS) run(args ...string) (string, error) {
	out, err := exec.Command("nsenter", append([]string{fmt.Sprintf("--net=/proc/%d/fd/%d", os.Getpid(), int(ns.Handle))}, args...)...).CombinedOutput()
	return string(out), err
}

// link joins a and b with a veth pair, named devA in a and devB in b, each
// with its address (a prefix; invalid for none) and up.
func link(t testing.TB, a *testNS, devA string, addrA netip.Prefix, b *testNS, devB string, addrB netip.Prefix) {
	t.Helper()
	ha, hb := a.Netlink(t), b.Netlink(t)
	if err := ha.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: devA}, PeerName: devB, PeerNamespace: netlink.NsFd(int(b.Handle))}); err != nil {
		t.Fatalf("veth %s/%s: %v", devA, devB, err)
	}
	for _, x := range []struct {
		h    *netlink.Handle
		dev  string
		addr netip.Prefix
	}{{ha, devA, addrA}, {hb, devB, addrB}} {
		l, err := x.h.LinkByName(x.dev)
		if err != nil {
			t.Fatal(err)
		}
		if x.addr.IsValid() {
			addAddr(t, x.h, l, x.addr)
		}
		if err := x.h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
}

func addAddr(t testing.TB, h *netlink.Handle, l netlink.Link, p netip.Prefix) {
	t.Helper()
	a, err := netlink.ParseAddr(p.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(l, a); err != nil {
		t.Fatalf("address %s on %s: %v", p, l.Attrs().Name, err)
	}
}

// route adds dst via gw (dst "default" for the default route).
func route(t testing.TB, ns *testNS, dst string, gw netip.Addr) {
	t.Helper()
	r := &netlink.Route{Gw: net.IP(gw.AsSlice())}
	if dst != "default" {
		_, n, err := net.ParseCIDR(dst)
		if err != nil {
			t.Fatal(err)
		}
		r.Dst = n
	}
	if err := ns.Netlink(t).RouteAdd(r); err != nil {
		t.Fatalf("%s: route %s via %s: %v", ns.name, dst, gw, err)
	}
}

// bridge makes a bridge with addr in ns.
func bridge(t testing.TB, ns *testNS, name string, addr netip.Prefix) {
	t.Helper()
	h := ns.Netlink(t)
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
		t.Fatal(err)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	addAddr(t, h, l, addr)
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
}

// task makes a task's namespace on node's bridge, addr/24 with its
// gateway as default route, as kernel/tasknet does.
func task(t testing.TB, node *testNS, br, name string, addr, gw netip.Addr) *testNS {
	t.Helper()
	ns := newNS(t, name)
	host := "v" + name
	link(t, node, host, netip.Prefix{}, ns, "eth0", netip.PrefixFrom(addr, 24))
	h := node.Netlink(t)
	l, err := h.LinkByName(host)
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.LinkByName(br)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetMaster(l, b); err != nil {
		t.Fatal(err)
	}
	route(t, ns, "default", gw)
	return ns
}

// backend serves on addr inside ns: each connection is first told "NAME
// CLIENT" (CLIENT: the address the server sees), then "NAME" for every
// line it sends. Over UDP, every datagram gets "NAME CLIENT".
func backend(t testing.TB, ns *testNS, name, network, addr string) {
	t.Helper()
	if network == "udp" {
		var pc net.PacketConn
		if err := ns.Do(func() (err error) { pc, err = net.ListenPacket("udp", addr); return err }); err != nil {
			t.Fatalf("%s: listen %s: %v", name, addr, err)
		}
		t.Cleanup(func() { pc.Close() })
		go func() {
			buf := make([]byte, 64)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				host, _, _ := net.SplitHostPort(from.String())
				_, _ = pc.WriteTo([]byte(name+" "+host+"\n"), from)
			}
		}()
		return
	}
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen(network, addr); return err }); err != nil {
		t.Fatalf("%s: listen %s: %v", name, addr, err)
	}
	netnstest.Serve(t, ln, func(c net.Conn) {
		defer c.Close()
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		if _, err := c.Write([]byte(name + " " + host + "\n")); err != nil {
			return
		}
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			if _, err := c.Write([]byte(name + "\n")); err != nil {
				return
			}
		}
	})
}

// reply is what a backend answered: its name and the client it saw.
type reply struct{ backend, client string }

// dial connects from inside ns and returns the backend's first line, and
// the connection, open, when keep is set.
func dial(ns *testNS, network, addr string, keep bool) (reply, net.Conn, error) {
	var c net.Conn
	if err := ns.Do(func() (err error) {
		c, err = net.DialTimeout(network, addr, 5*time.Second)
		return err
	}); err != nil {
		return reply{}, nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if network == "udp" {
		if _, err := c.Write([]byte("hi\n")); err != nil {
			c.Close()
			return reply{}, nil, err
		}
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return reply{}, nil, err
	}
	name, client, _ := strings.Cut(strings.TrimSpace(line), " ")
	if !keep {
		c.Close()
		return reply{name, client}, nil, nil
	}
	_ = c.SetDeadline(time.Time{})
	return reply{name, client}, c, nil
}

// spread dials addr n times from ns and counts the replies by backend and
// by the client address each backend saw.
func spread(t testing.TB, ns *testNS, network, addr string, n int) (byBackend map[string]int, clients map[string]map[string]bool) {
	t.Helper()
	byBackend, clients = map[string]int{}, map[string]map[string]bool{}
	for i := 0; i < n; i++ {
		r, _, err := dial(ns, network, addr, false)
		if err != nil {
			t.Fatalf("from %s: dial %s/%s (%d of %d): %v", ns.name, network, addr, i+1, n, err)
		}
		byBackend[r.backend]++
		if clients[r.backend] == nil {
			clients[r.backend] = map[string]bool{}
		}
		clients[r.backend][r.client] = true
	}
	return byBackend, clients
}
