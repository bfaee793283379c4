package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"

	"github.com/shoalhq/shoal/kernel/netnstest"
	"github.com/shoalhq/shoal/sdk"
)

// Addresses of the server in these tests: loopback, and none of the
// clients' (127.0.0.2-4).
const (
	addrA = "127.0.1.1:0"
	addrB = "127.0.1.2:0"
	addrC = "127.0.1.3:0"
)

// noUpstream is a host configuration without nameservers: the tests here
// answer from the index only.
var noUpstream = &HostConfig{Timeout: time.Second, Attempts: 1}

// answered checks that the server at addr answers web. for clientA over
// network.
func answered(t testing.TB, addr, network string) {
	t.Helper()
	r, err := exchangeAt(addr, clientA, network, new(dns.Msg).SetQuestion("web.", dns.TypeA))
	if err != nil {
		t.Fatalf("%s over %s: %v", addr, network, err)
	}
	if got := answers(r); !slices.Equal(got, []string{"10.0.1.2"}) {
		t.Fatalf("%s over %s: %s %v, want 10.0.1.2", addr, network, dns.RcodeToString[r.Rcode], got)
	}
}

// closed checks that nothing answers at addr over UDP or TCP: a closed
// port gets ICMP port unreachable (UDP) or a reset (TCP).
func closed(t testing.TB, addr string) {
	t.Helper()
	for _, network := range []string{"udp", "tcp"} {
		if r, err := exchangeAt(addr, clientA, network, new(dns.Msg).SetQuestion("web.", dns.TypeA)); err == nil {
			t.Errorf("%s over %s: answered %s %v, want no answer", addr, network, dns.RcodeToString[r.Rcode], answers(r))
		}
	}
}

// goroutines returns the stacks of the goroutines that have a frame
// containing any of frames.
func goroutines(frames ...string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, f := range frames {
			if strings.Contains(g, f) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// servingGoroutines counts the goroutines of Run's serving a listener:
// two per address (UDP and TCP). Once SetAddrs returned, those of the
// addresses it removed are out of ActivateAndServe (they may still be
// returning from Run's function around it); those of an address that
// answered over UDP and TCP are in it.
func servingGoroutines() int {
	n := 0
	for _, g := range goroutines("github.com/miekg/dns.(*Server).ActivateAndServe(") {
		if strings.Contains(g, "github.com/shoalhq/shoal/kernel/dns.(*Server).serve.func") {
			n++
		}
	}
	return n
}

// checkNoServerGoroutine fails t if a goroutine runs a DNS server's code:
// Run's own, miekg/dns's servers' loops, or a query's (handler, reads
// and writes). A per-query goroutine of miekg/dns may still be returning
// after it told its server it was done, but it is out of all this by then.
// The package's tests do not run in parallel, and newUpstream's cleanup
// waits for its servers, so none may be left once Run returned.
func checkNoServerGoroutine(t testing.TB) {
	t.Helper()
	left := goroutines(
		"github.com/shoalhq/shoal/kernel/dns.(*Server).",
		"github.com/shoalhq/shoal/kernel/dns.handler.",
		"github.com/shoalhq/shoal/kernel/dns.sizeReader.",
		"github.com/shoalhq/shoal/kernel/dns.(*limitListener).",
		"github.com/shoalhq/shoal/kernel/dns.(*limitConn).",
		"github.com/miekg/dns.(*Server).ActivateAndServe(",
		"github.com/miekg/dns.(*Server).serveUDP(",
		"github.com/miekg/dns.(*Server).serveTCP(",
		"github.com/miekg/dns.(*Server).serveDNS(",
	)
	for _, g := range left {
		t.Errorf("goroutine left after Run returned:\n%s", g)
	}
}

// TestSetAddrs adds and removes addresses while a kept one answers.
func TestSetAddrs(t *testing.T) {
	s, _ := runServer(t, testIndex(t), Config{Upstream: noUpstream})
	if got := s.Addrs(); len(got) != 0 {
		t.Fatalf("Addrs %v, want none", got)
	}

	if err := s.SetAddrs([]string{addrA}); err != nil {
		t.Fatal(err)
	}
	addrs := s.Addrs()
	if len(addrs) != 1 || strings.HasSuffix(addrs[0], ":0") {
		t.Fatalf("Addrs %v, want 127.0.1.1 with its port", addrs)
	}
	a := addrs[0]
	answered(t, a, "udp")
	answered(t, a, "tcp")

	if err := s.SetAddrs([]string{addrA, addrB}); err != nil {
		t.Fatal(err)
	}
	addrs = s.Addrs()
	if len(addrs) != 2 || addrs[0] != a {
		t.Fatalf("Addrs %v, want %s kept and 127.0.1.2", addrs, a)
	}
	b := addrs[1]
	for _, addr := range addrs {
		answered(t, addr, "udp")
		answered(t, addr, "tcp")
	}
	if n := servingGoroutines(); n != 4 {
		t.Errorf("%d goroutines serve 2 addresses, want 4", n)
	}

	// The same addresses, as asked or as bound, and twice: nothing
	// changes.
	for _, same := range [][]string{{addrA, addrB}, {a, b}, {a, addrA, b, b}} {
		if err := s.SetAddrs(same); err != nil {
			t.Fatal(err)
		}
		if got := s.Addrs(); !slices.Equal(got, []string{a, b}) {
			t.Fatalf("SetAddrs(%v): Addrs %v, want %v", same, got, []string{a, b})
		}
	}

	if err := s.SetAddrs([]string{addrA}); err != nil {
		t.Fatal(err)
	}
	if got := s.Addrs(); !slices.Equal(got, []string{a}) {
		t.Fatalf("Addrs %v, want %s", got, a)
	}
	closed(t, b)
	answered(t, a, "udp")
	answered(t, a, "tcp")
	if n := servingGoroutines(); n != 2 {
		t.Errorf("%d goroutines serve 1 address, want 2", n)
	}

	// A kept address answers every query while another comes and goes.
	churn(t, s, a)

	if err := s.SetAddrs(nil); err != nil {
		t.Fatal(err)
	}
	closed(t, a)
	if n := servingGoroutines(); n != 0 {
		t.Errorf("%d goroutines serve no address, want 0", n)
	}
}

// churn adds and removes a second address, at least 20 times and until
// 20 queries were answered, while a goroutine queries kept; it fails t if
// one of those queries is not answered.
func churn(t *testing.T, s *Server, kept string) {
	t.Helper()
	var (
		queries  atomic.Int64
		stop     = make(chan struct{})
		querying = make(chan struct{})
		qerr     error
	)
	go func() {
		defer close(querying)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			network := []string{"udp", "tcp"}[i%2]
			r, err := exchangeAt(kept, clientA, network, new(dns.Msg).SetQuestion("web.", dns.TypeA))
			if err == nil && !slices.Equal(answers(r), []string{"10.0.1.2"}) {
				err = fmt.Errorf("answered %s %v", dns.RcodeToString[r.Rcode], answers(r))
			}
			if err != nil {
				qerr = fmt.Errorf("query %d to the kept address over %s: %w", i, network, err)
				return
			}
			queries.Add(1)
		}
	}()
	rounds := 0
	for ; rounds < 20 || queries.Load() < 20; rounds++ {
		select {
		case <-querying:
		default:
			if err := s.SetAddrs([]string{addrA, addrB}); err != nil {
				t.Fatal(err)
			}
			b := s.Addrs()[1]
			answered(t, b, []string{"udp", "tcp"}[rounds%2])
			if err := s.SetAddrs([]string{addrA}); err != nil {
				t.Fatal(err)
			}
			closed(t, b)
			continue
		}
		break
	}
	close(stop)
	<-querying
	if qerr != nil {
		t.Fatal(qerr)
	}
	t.Logf("%d rounds, %d queries to the kept address", rounds, queries.Load())
}

// TestSetAddrsConcurrent calls SetAddrs from several goroutines while a
// kept address answers (run it with -race).
func TestSetAddrsConcurrent(t *testing.T) {
	s, _ := runServer(t, testIndex(t), Config{Upstream: noUpstream, Addrs: []string{addrA}})
	a := s.Addrs()[0]
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	for _, other := range []string{addrB, addrC} {
		wg.Go(func() {
			for range 20 {
				for _, addrs := range [][]string{{a, other}, {addrA}} {
					if err := s.SetAddrs(addrs); err != nil {
						errc <- err
						return
					}
				}
				if !slices.Contains(s.Addrs(), a) {
					errc <- fmt.Errorf("Addrs %v without %s", s.Addrs(), a)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 40 {
			network := []string{"udp", "tcp"}[i%2]
			r, err := exchangeAt(a, clientA, network, new(dns.Msg).SetQuestion("web.", dns.TypeA))
			if err == nil && !slices.Equal(answers(r), []string{"10.0.1.2"}) {
				err = fmt.Errorf("answered %s %v", dns.RcodeToString[r.Rcode], answers(r))
			}
			if err != nil {
				errc <- fmt.Errorf("query %d to the kept address over %s: %w", i, network, err)
				return
			}
		}
	})
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if err := s.SetAddrs([]string{a}); err != nil {
		t.Fatal(err)
	}
	if got := s.Addrs(); !slices.Equal(got, []string{a}) {
		t.Errorf("Addrs %v, want %s", got, a)
	}
	if n := servingGoroutines(); n != 2 {
		t.Errorf("%d goroutines serve 1 address, want 2", n)
	}
}

func TestSetAddrsErrors(t *testing.T) {
	ix := testIndex(t)
	busy := startServer(t, ix, Config{}).Addrs()[0]
	s, stop := runServer(t, ix, Config{Upstream: noUpstream})

	err := s.SetAddrs([]string{"127.0.1.9", addrA, busy})
	if err == nil {
		t.Fatal("SetAddrs succeeded with an address without a port and one in use")
	}
	for _, want := range []string{"listen on 127.0.1.9: ", "listen on " + busy + ": "} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	addrs := s.Addrs()
	if len(addrs) != 1 || !strings.HasPrefix(addrs[0], "127.0.1.1:") {
		t.Fatalf("Addrs %v, want the good address applied", addrs)
	}
	answered(t, addrs[0], "udp")
	answered(t, addrs[0], "tcp")

	tooMany := make([]string, maxAddrs+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("127.0.2.%d:%d", i%250+1, 10000+i)
	}
	err = s.SetAddrs(tooMany)
	if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "addrs: at most 1024") {
		t.Errorf("%d addresses: %v, want an invalid argument naming addrs and the limit", len(tooMany), err)
	}
	if s2, err := New(Config{Upstream: noUpstream, Addrs: tooMany}, ix, nil); err == nil {
		s2.Close()
		t.Errorf("New with %d addresses succeeded", len(tooMany))
	} else if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "addrs: at most 1024") {
		t.Errorf("New with %d addresses: %v, want an invalid argument naming addrs and the limit", len(tooMany), err)
	}
	if got := s.Addrs(); !slices.Equal(got, addrs) {
		t.Errorf("Addrs %v after too many, want %v unchanged", got, addrs)
	}

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAddrs([]string{addrB}); err == nil {
		t.Error("SetAddrs succeeded after Run returned")
	}
	if got := s.Addrs(); len(got) != 0 {
		t.Errorf("Addrs %v after Run returned, want none", got)
	}
	closed(t, addrs[0])

	t.Run("after Close", func(t *testing.T) {
		s, err := New(Config{Upstream: noUpstream}, ix, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if err := s.SetAddrs([]string{addrA}); err == nil {
			t.Error("SetAddrs succeeded after Close")
		}
		if err := s.Run(context.Background()); err == nil {
			t.Error("Run succeeded after Close")
		}
	})
}

// newListening returns a Server, not running, listening on addrA.
func newListening(t *testing.T, ix *Index) *Server {
	t.Helper()
	s, err := New(Config{Upstream: noUpstream}, ix, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetAddrs([]string{addrA}); err != nil {
		s.Close()
		t.Fatal(err)
	}
	return s
}

// TestSetAddrsBeforeRun: addresses set before Run are served by Run, or
// closed by Close.
func TestSetAddrsBeforeRun(t *testing.T) {
	ix := testIndex(t)
	t.Run("Run", func(t *testing.T) {
		s := newListening(t, ix)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		a := s.Addrs()[0]
		answered(t, a, "udp")
		answered(t, a, "tcp")
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		closed(t, a)
	})
	t.Run("Close", func(t *testing.T) {
		s := newListening(t, ix)
		a := s.Addrs()[0]
		s.Close()
		closed(t, a)
	})
}

// TestTCPConnsPerAddress: MaxTCPConns bounds each address's connections,
// not all of them.
func TestTCPConnsPerAddress(t *testing.T) {
	s, _ := runServer(t, testIndex(t), Config{Upstream: noUpstream, MaxTCPConns: 1, Addrs: []string{addrA, addrB}})
	a, b := s.Addrs()[0], s.Addrs()[1]
	c := client(clientA, "tcp")
	q := new(dns.Msg).SetQuestion("web.", dns.TypeA)
	// One connection to a, kept open (idle, the server keeps it 8 s).
	co, err := c.Dial(a)
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	if _, _, err := c.ExchangeWithConn(q, co); err != nil {
		t.Fatal(err)
	}
	if r, err := exchangeAt(a, clientA, "tcp", q); err == nil {
		t.Errorf("a second connection to %s answered %v, want it closed", a, answers(r))
	}
	answered(t, b, "tcp")
}

// TestRunWaits: once Run returned, no goroutine of the server is left,
// though queries were in flight: forwards, idle TCP connections, on
// addresses set at New and by SetAddrs. SetAddrs removing an address
// cancels its forwards rather than wait for them.
func TestRunWaits(t *testing.T) {
	// A silent nameserver, not a miekg/dns server: the check finds none
	// but ours.
	up, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	hc := &HostConfig{Servers: []string{up.LocalAddr().String()}, Timeout: time.Hour, Attempts: 1}
	s, stop := runServer(t, testIndex(t), Config{Upstream: hc, ForwardTimeout: time.Hour, Addrs: []string{addrA}})
	if err := s.SetAddrs([]string{addrA, addrB}); err != nil {
		t.Fatal(err)
	}
	a, b := s.Addrs()[0], s.Addrs()[1]

	// forward sends a query to forward at addr and returns once the
	// nameserver has it; the client's answer (SERVFAIL, or none) is not
	// checked.
	var clients sync.WaitGroup
	forward := func(addr, network string) {
		clients.Go(func() {
			exchangeAt(addr, clientA, network, new(dns.Msg).SetQuestion("example.org.", dns.TypeA))
		})
		// The deadline guards against a hang; it bounds nothing.
		up.SetReadDeadline(time.Now().Add(time.Minute))
		buf := make([]byte, 512)
		if _, _, err := up.ReadFrom(buf); err != nil {
			t.Fatalf("the nameserver got no query to forward: %v", err)
		}
	}
	forward(b, "udp")
	// Its forward would take an hour: SetAddrs cancels it.
	if err := s.SetAddrs([]string{addrA}); err != nil {
		t.Fatal(err)
	}
	closed(t, b)

	forward(a, "udp")
	forward(a, "tcp")
	c := client(clientA, "tcp")
	co, err := c.Dial(a)
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	if _, _, err := c.ExchangeWithConn(new(dns.Msg).SetQuestion("web.", dns.TypeA), co); err != nil {
		t.Fatal(err)
	}

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkNoServerGoroutine(t)
	clients.Wait()
}

// TestSetAddrsFreebind binds an address that is on no interface yet, as
// a network's gateway before its bridge has it, in a network namespace of
// the test's own.
func TestSetAddrsFreebind(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes a network namespace, to add an address that is on no interface of the host")
	}
	ns := newNS(t)
	const gateway = "192.0.2.53" // TEST-NET-1
	addr := net.JoinHostPort(gateway, "53")
	ix := testIndex(t)
	if err := ix.SetTask(Task{NetworkID: "net-a", TaskID: "ns", Name: "ns.1", ServiceName: "ns", Addr: netip.MustParseAddr(gateway), Backend: true}); err != nil {
		t.Fatal(err)
	}
	s, _ := runServer(t, ix, Config{Upstream: noUpstream})

	// Without IP_FREEBIND the address does not bind.
	if err := ns.Do(func() error {
		pc, err := net.ListenPacket("udp", addr)
		if err == nil {
			pc.Close()
			return errors.New("bound without IP_FREEBIND: the address is on an interface already")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	if err := ns.Do(func() error { return s.SetAddrs([]string{addr}) }); err != nil {
		t.Fatalf("SetAddrs before the address is up: %v", err)
	}
	if got := s.Addrs(); !slices.Equal(got, []string{addr}) {
		t.Fatalf("Addrs %v, want %s", got, addr)
	}

	query := func(network string) error {
		return ns.Do(func() error {
			r, err := exchangeAt(addr, gateway, network, new(dns.Msg).SetQuestion("web.", dns.TypeA))
			if err != nil {
				return err
			}
			if got := answers(r); !slices.Equal(got, []string{"10.0.1.2"}) {
				return fmt.Errorf("%s %v, want 10.0.1.2", dns.RcodeToString[r.Rcode], got)
			}
			return nil
		})
	}
	// The address comes up, goes away and comes back: the listener
	// answers whenever it is up.
	for round := range 2 {
		ns.addr(t, gateway, true)
		for _, network := range []string{"udp", "tcp"} {
			if err := query(network); err != nil {
				t.Errorf("round %d, over %s, once the address is up: %v", round, network, err)
			}
		}
		ns.addr(t, gateway, false)
	}

	if err := s.SetAddrs(nil); err != nil {
		t.Fatal(err)
	}
	ns.addr(t, gateway, true)
	for _, network := range []string{"udp", "tcp"} {
		if err := query(network); err == nil {
			t.Errorf("over %s: answered once removed", network)
		}
	}
}

// testNS is a network namespace of the test and a netlink handle in it.
type testNS struct {
	*netnstest.NS
	nl *netlink.Handle
}

// newNS makes an empty namespace with lo up, removed when the test ends.
func newNS(t testing.TB) *testNS {
	t.Helper()
	ns := netnstest.NewNS(t)
	return &testNS{NS: ns, nl: ns.Netlink(t)}
}

// addr adds ip/32 to lo, or removes it.
func (ns *testNS) addr(t testing.TB, ip string, up bool) {
	t.Helper()
	lo, err := ns.nl.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	a, err := netlink.ParseAddr(ip + "/32")
	if err != nil {
		t.Fatal(err)
	}
	if up {
		err = ns.nl.AddrAdd(lo, a)
	} else {
		err = ns.nl.AddrDel(lo, a)
	}
	if err != nil {
		t.Fatalf("address %s up %v: %v", ip, up, err)
	}
}

// TestSetAddrsNeverForwardsToItself: the addresses SetAddrs adds are never
// forwarded to, those it removes may be again.
func TestSetAddrsNeverForwardsToItself(t *testing.T) {
	s, err := New(Config{Upstream: noUpstream}, NewIndex(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetAddrs([]string{addrA}); err != nil {
		t.Fatal(err)
	}
	a := s.Addrs()[0]
	const other = "192.0.2.53:53"
	s.setHost(HostConfig{Servers: []string{a, other}})
	check := func(want ...string) {
		t.Helper()
		if got := s.Host().Servers; !slices.Equal(got, want) {
			t.Errorf("nameservers %v, want %v", got, want)
		}
	}
	check(other)
	if err := s.SetAddrs(nil); err != nil {
		t.Fatal(err)
	}
	check(a, other)
	if err := s.SetAddrs([]string{a}); err != nil {
		t.Fatal(err)
	}
	check(other)
}
