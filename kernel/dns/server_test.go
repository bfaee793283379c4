package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// upstream is a fake resolver on 127.0.0.1: it answers every A query with
// 192.0.2.1, or says nothing when silent, and records the names asked.
type upstream struct {
	addr   string
	silent atomic.Bool
	rcode  atomic.Int32
	delay  atomic.Int64 // a time.Duration to wait before answering
	mu     sync.Mutex
	asked  []string
}

func newUpstream(t testing.TB) *upstream {
	t.Helper()
	u := &upstream{}
	pc, l, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		u.mu.Lock()
		u.asked = append(u.asked, r.Question[0].Name)
		u.mu.Unlock()
		if u.silent.Load() {
			return
		}
		time.Sleep(time.Duration(u.delay.Load()))
		m := new(dns.Msg).SetReply(r)
		m.Rcode = int(u.rcode.Load())
		if m.Rcode == dns.RcodeSuccess && r.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A:   net.IPv4(192, 0, 2, 1),
			})
		}
		w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		started, done := make(chan struct{}), make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() {
			defer close(done)
			srv.ActivateAndServe()
		}()
		<-started
		// Waits for the goroutine, so that no server goroutine outlives
		// the test (checkNoServerGoroutine).
		t.Cleanup(func() {
			srv.Shutdown()
			<-done
		})
	}
	return u
}

func (u *upstream) names() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.asked)
}

// startServer runs a server on 127.0.0.1 forwarding to up, until the test
// ends; the cleanup checks that Run returns.
func startServer(t testing.TB, ix *Index, cfg Config, up ...*upstream) *Server {
	t.Helper()
	cfg.Addrs = []string{"127.0.0.1:0"}
	if cfg.Upstream == nil {
		hc := HostConfig{Search: []string{"example.com"}, Timeout: time.Second, Attempts: 1}
		for _, u := range up {
			hc.Servers = append(hc.Servers, u.addr)
		}
		cfg.Upstream = &hc
	}
	s, _ := runServer(t, ix, cfg)
	return s
}

// runServer runs a server with cfg as is until the test ends, or until
// stop is called: stop returns Run's error, checking that Run returns.
func runServer(t testing.TB, ix *Index, cfg Config) (s *Server, stop func() error) {
	t.Helper()
	s, err := New(cfg, ix, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(time.Minute):
				// A guard against a hang, not a bound on the time taken.
				runErr = errors.New("Run did not return a minute after its context was cancelled")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s, stop
}

// query asks s for name from the loopback address from, over network.
func query(t testing.TB, s *Server, from, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg).SetQuestion(name, qtype)
	r, err := exchangeFrom(s, from, network, m)
	if err != nil {
		t.Fatalf("query %s %s from %s over %s: %v", name, dns.TypeToString[qtype], from, network, err)
	}
	return r
}

func exchangeFrom(s *Server, from, network string, m *dns.Msg) (*dns.Msg, error) {
	return exchangeAt(s.Addrs()[0], from, network, m)
}

// exchangeAt sends m to the server at addr from the address from.
func exchangeAt(addr, from, network string, m *dns.Msg) (*dns.Msg, error) {
	c := client(from, network)
	r, _, err := c.Exchange(m, addr)
	return r, err
}

// client is a client from the address from, over network.
func client(from, network string) *dns.Client {
	var local net.Addr = &net.UDPAddr{IP: net.ParseIP(from)}
	if network == "tcp" {
		local = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	return &dns.Client{Net: network, Timeout: 3 * time.Second, Dialer: &net.Dialer{LocalAddr: local, Timeout: 3 * time.Second}}
}

func answers(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		default:
			out = append(out, rr.String())
		}
	}
	slices.Sort(out)
	return out
}

const (
	clientA = "127.0.0.2" // a task on net-a
	clientB = "127.0.0.3" // a task on net-b
	clientC = "127.0.0.4" // a task on net-a and net-b
	nobody  = "127.0.0.1" // no task
)

// testIndex is two networks: net-a with services web (vip), api (dnsrr,
// one backend unhealthy), a cache task with alias db; net-b with a
// service secret. Service both is on both, with a VIP on each.
func testIndex(t testing.TB) *Index {
	t.Helper()
	ix := NewIndex()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	a := netip.MustParseAddr
	must(ix.SetService(Service{NetworkID: "net-a", Name: "web", VIP: a("10.0.1.2"), Aliases: []string{"www"}}))
	must(ix.SetService(Service{NetworkID: "net-a", Name: "api", Mode: ModeDNSRR}))
	must(ix.SetService(Service{NetworkID: "net-a", Name: "both", VIP: a("10.0.1.3")}))
	must(ix.SetService(Service{NetworkID: "net-b", Name: "secret", VIP: a("10.0.2.2")}))
	must(ix.SetService(Service{NetworkID: "net-b", Name: "both", VIP: a("10.0.2.3")}))
	for _, tk := range []Task{
		{NetworkID: "net-a", TaskID: "t1", Name: "web.1", ServiceName: "web", Addr: a("10.0.1.10"), Backend: true},
		{NetworkID: "net-a", TaskID: "t2", Name: "web.2", ServiceName: "web", Addr: a("10.0.1.11"), Backend: true},
		{NetworkID: "net-a", TaskID: "t3", Name: "api.1", ServiceName: "api", Addr: a("10.0.1.20"), Backend: true},
		{NetworkID: "net-a", TaskID: "t4", Name: "api.2", ServiceName: "api", Addr: a("10.0.1.21"), Backend: false},
		{NetworkID: "net-a", TaskID: "t5", Name: "cache.1", ServiceName: "cache", Addr: a("10.0.1.30"), Aliases: []string{"DB"}, Backend: true},
		{NetworkID: "net-a", TaskID: "t7", Name: "v6.1", ServiceName: "v6", Addr: a("fd00::7"), Backend: true},
		{NetworkID: "net-b", TaskID: "t6", Name: "secret.1", ServiceName: "secret", Addr: a("10.0.2.10"), Backend: true},
		{NetworkID: "net-a", TaskID: "ca", Name: "client.1", ServiceName: "client", Addr: a(clientA), Backend: true},
		{NetworkID: "net-b", TaskID: "cb", Name: "other.1", ServiceName: "other", Addr: a(clientB), Backend: true},
		{NetworkID: "net-a", TaskID: "cc", Name: "multi.1", ServiceName: "multi", Addr: a(clientC), Backend: true},
		{NetworkID: "net-b", TaskID: "cc", Name: "multi.1", ServiceName: "multi", Addr: netip.MustParseAddr("10.0.2.40"), Backend: true},
	} {
		must(ix.SetTask(tk))
	}
	return ix
}

func TestAnswers(t *testing.T) {
	up := newUpstream(t)
	s := startServer(t, testIndex(t), Config{}, up)
	for _, tc := range []struct {
		name      string
		from      string
		q         string
		qtype     uint16
		rcode     int
		want      []string
		forwarded bool
	}{
		{"vip", clientA, "web.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.1.2"}, false},
		{"upper case", clientA, "WeB.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.1.2"}, false},
		{"service alias", clientA, "www.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.1.2"}, false},
		{"search domain appended", clientA, "web.example.com.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.1.2"}, false},
		{"AAAA of an IPv4 name", clientA, "web.", dns.TypeAAAA, dns.RcodeSuccess, nil, false},
		{"MX of our name", clientA, "web.", dns.TypeMX, dns.RcodeSuccess, nil, false},
		{"tasks. of vip", clientA, "tasks.web.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.1.10", "10.0.1.11"}, false},
		{"dnsrr without the unhealthy", clientA, "api.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.1.20"}, false},
		{"tasks. of dnsrr", clientA, "tasks.api.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.1.20"}, false},
		{"task name", clientA, "web.1.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.1.10"}, false},
		{"task name with ID", clientA, "web.1.t1.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.1.10"}, false},
		{"unhealthy task by name", clientA, "api.2.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.1.21"}, false},
		{"task alias", clientA, "db.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.1.30"}, false},
		{"AAAA", clientA, "v6.", dns.TypeAAAA, dns.RcodeSuccess, []string{"fd00::7"}, false},
		{"A of an IPv6 name", clientA, "v6.", dns.TypeA, dns.RcodeSuccess, nil, false},
		{"other network's service", clientA, "secret.", dns.TypeA, dns.RcodeNameError, nil, false},
		{"other network's tasks.", clientA, "tasks.secret.", dns.TypeA, dns.RcodeNameError, nil, false},
		{"other network's task", clientA, "secret.1.t6.", dns.TypeA, dns.RcodeNameError, nil, false},
		{"single label", clientA, "nosuch.", dns.TypeA, dns.RcodeNameError, nil, false},
		{"not ours", clientA, "example.org.", dns.TypeA, dns.RcodeSuccess, []string{"192.0.2.1"}, true},
		{"other network's name in the search domain", clientA, "secret.example.com.", dns.TypeA, dns.RcodeSuccess, []string{"192.0.2.1"}, true},
		{"net-b's own", clientB, "secret.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.2.2"}, false},
		{"net-b's vip of a service on both", clientB, "both.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.2.3"}, false},
		{"net-b does not see net-a", clientB, "web.", dns.TypeA, dns.RcodeNameError, nil, false},
		{"a task on both networks sees both", clientC, "secret.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.2.2"}, false},
		{"and both VIPs", clientC, "both.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.1.3", "10.0.2.3"}, false},
		{"an unknown client sees nothing", nobody, "web.", dns.TypeA, dns.RcodeNameError, nil, false},
		{"an unknown client is forwarded", nobody, "example.org.", dns.TypeA, dns.RcodeSuccess, []string{"192.0.2.1"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, network := range []string{"udp", "tcp"} {
				before := len(up.names())
				r := query(t, s, tc.from, network, tc.q, tc.qtype)
				if r.Rcode != tc.rcode {
					t.Errorf("%s: rcode %s, want %s", network, dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
				if got := answers(r); !slices.Equal(got, tc.want) {
					t.Errorf("%s: answers %v, want %v", network, got, tc.want)
				}
				if len(r.Question) != 1 || r.Question[0].Name != dns.Fqdn(tc.q) {
					t.Errorf("%s: question %v, want %s", network, r.Question, dns.Fqdn(tc.q))
				}
				for _, rr := range r.Answer {
					if !tc.forwarded && rr.Header().Ttl != 0 {
						t.Errorf("%s: TTL %d, want 0", network, rr.Header().Ttl)
					}
					if rr.Header().Name != dns.Fqdn(tc.q) {
						t.Errorf("%s: owner %s, want %s", network, rr.Header().Name, dns.Fqdn(tc.q))
					}
				}
				if asked := len(up.names()) - before; tc.forwarded != (asked > 0) {
					t.Errorf("%s: upstream asked %d times, forwarded %v", network, asked, tc.forwarded)
				}
				if r.Authoritative == tc.forwarded {
					t.Errorf("%s: authoritative %v for a forwarded %v answer", network, r.Authoritative, tc.forwarded)
				}
			}
		})
	}
}

func TestForwardFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		upRcode int
		silent  bool
		want    int
	}{
		{"silent upstream", dns.RcodeSuccess, true, dns.RcodeServerFailure},
		{"upstream SERVFAIL", dns.RcodeServerFailure, false, dns.RcodeServerFailure},
		{"upstream REFUSED", dns.RcodeRefused, false, dns.RcodeRefused},
		{"upstream NXDOMAIN", dns.RcodeNameError, false, dns.RcodeNameError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t)
			up.silent.Store(tc.silent)
			up.rcode.Store(int32(tc.upRcode))
			const timeout = 300 * time.Millisecond
			s := startServer(t, testIndex(t), Config{ForwardTimeout: timeout}, up)
			start := time.Now()
			r := query(t, s, clientA, "udp", "example.org.", dns.TypeA)
			took := time.Since(start)
			if r.Rcode != tc.want {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.want])
			}
			if took > timeout+700*time.Millisecond {
				t.Errorf("answered in %v, want within the forward timeout %v", took, timeout)
			}
			if tc.silent && took < timeout-50*time.Millisecond {
				t.Errorf("SERVFAIL after %v, before the forward timeout %v", took, timeout)
			}
		})
	}
}

func TestForwardNextServer(t *testing.T) {
	dead, good := newUpstream(t), newUpstream(t)
	dead.rcode.Store(dns.RcodeServerFailure)
	s := startServer(t, testIndex(t), Config{ForwardTimeout: time.Second}, dead, good)
	r := query(t, s, clientA, "udp", "example.org.", dns.TypeA)
	if got := answers(r); r.Rcode != dns.RcodeSuccess || !slices.Equal(got, []string{"192.0.2.1"}) {
		t.Errorf("got %s %v, want the second nameserver's answer", dns.RcodeToString[r.Rcode], got)
	}
	if len(dead.names()) != 1 || len(good.names()) != 1 {
		t.Errorf("asked the first nameserver %d times and the second %d times, want once each", len(dead.names()), len(good.names()))
	}
}

// A slow upstream answering within the try's share of the forward
// timeout is waited for: miekg/dns's own 2 s read default does not cut the
// try short.
func TestForwardWaitsItsWholeShare(t *testing.T) {
	slow := newUpstream(t)
	slow.delay.Store(int64(2500 * time.Millisecond))
	s := startServer(t, testIndex(t), Config{ForwardTimeout: 8 * time.Second}, slow)
	m := new(dns.Msg).SetQuestion("example.org.", dns.TypeA)
	c := client(clientA, "udp")
	c.Timeout = 10 * time.Second
	r, _, err := c.Exchange(m, s.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := answers(r); r.Rcode != dns.RcodeSuccess || !slices.Equal(got, []string{"192.0.2.1"}) {
		t.Errorf("got %s %v, want the slow nameserver's answer", dns.RcodeToString[r.Rcode], got)
	}
}

func TestForwardsBounded(t *testing.T) {
	up := newUpstream(t)
	up.silent.Store(true)
	s := startServer(t, testIndex(t), Config{ForwardTimeout: 2 * time.Second, MaxForwards: 1}, up)
	go exchangeFrom(s, clientA, "udp", new(dns.Msg).SetQuestion("slow.example.org.", dns.TypeA))
	deadline := time.Now().Add(2 * time.Second)
	for len(up.names()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	r := query(t, s, clientA, "udp", "example.org.", dns.TypeA)
	if r.Rcode != dns.RcodeServerFailure || time.Since(start) > time.Second {
		t.Errorf("past MaxForwards: %s after %v, want SERVFAIL at once", dns.RcodeToString[r.Rcode], time.Since(start))
	}
	// Local answers do not wait for forwards.
	if r := query(t, s, clientA, "udp", "web.", dns.TypeA); r.Rcode != dns.RcodeSuccess {
		t.Errorf("local answer while forwards are full: %s", dns.RcodeToString[r.Rcode])
	}
}

func TestTruncation(t *testing.T) {
	ix := testIndex(t)
	var want []string
	for i := range 100 {
		a := netip.AddrFrom4([4]byte{10, 0, 3, byte(i + 1)})
		want = append(want, a.String())
		if err := ix.SetTask(Task{NetworkID: "net-a", TaskID: fmt.Sprint("big", i), Name: fmt.Sprint("big.", i+1), ServiceName: "big", Addr: a, Backend: true}); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(want)
	s := startServer(t, ix, Config{})

	r := query(t, s, clientA, "udp", "tasks.big.", dns.TypeA)
	r.Compress = true // for Len
	if !r.Truncated || len(r.Answer) == 0 || len(r.Answer) >= 100 || r.Len() > dns.MinMsgSize {
		t.Errorf("over UDP: truncated %v, %d answers, %d bytes; want truncated, some answers, at most 512 bytes", r.Truncated, len(r.Answer), r.Len())
	}
	m := new(dns.Msg).SetQuestion("tasks.big.", dns.TypeA)
	m.SetEdns0(4096, false)
	r, err := exchangeFrom(s, clientA, "udp", m)
	if err != nil {
		t.Fatal(err)
	}
	r.Compress = true
	if !r.Truncated || r.Len() > maxUDPSize || r.IsEdns0() == nil {
		t.Errorf("over UDP with EDNS 4096: truncated %v, %d bytes, OPT %v; want truncated to %d bytes with an OPT", r.Truncated, r.Len(), r.IsEdns0() != nil, maxUDPSize)
	}
	r = query(t, s, clientA, "tcp", "tasks.big.", dns.TypeA)
	if got := answers(r); r.Truncated || !slices.Equal(got, want) {
		t.Errorf("over TCP: truncated %v, %d answers, want all 100", r.Truncated, len(got))
	}

	// The order is random for each query.
	first := query(t, s, clientA, "tcp", "tasks.big.", dns.TypeA).Answer[0].String()
	for i := 0; ; i++ {
		if query(t, s, clientA, "tcp", "tasks.big.", dns.TypeA).Answer[0].String() != first {
			break
		}
		if i == 10 {
			t.Fatal("11 queries gave the same first address")
		}
	}
}

func TestBadQueries(t *testing.T) {
	s := startServer(t, testIndex(t), Config{})

	noQuestion := new(dns.Msg)
	noQuestion.Id = dns.Id()
	two := new(dns.Msg).SetQuestion("web.", dns.TypeA)
	two.Question = append(two.Question, dns.Question{Name: "secret.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	chaos := new(dns.Msg).SetQuestion("version.bind.", dns.TypeTXT)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	update := new(dns.Msg).SetUpdate("example.org.")
	axfr := new(dns.Msg).SetAxfr("example.org.")

	for _, tc := range []struct {
		name    string
		network string
		m       *dns.Msg
		rcode   int
		want    []string
	}{
		{"no question", "udp", noQuestion, dns.RcodeFormatError, nil},
		{"two questions: the first is answered", "udp", two, dns.RcodeSuccess, []string{"10.0.1.2"}},
		{"class CHAOS", "udp", chaos, dns.RcodeRefused, nil},
		{"update", "udp", update, dns.RcodeNotImplemented, nil},
		{"zone transfer", "tcp", axfr, dns.RcodeRefused, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := exchangeFrom(s, clientA, tc.network, tc.m)
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != tc.rcode || !slices.Equal(answers(r), tc.want) {
				t.Errorf("got %s %v, want %s %v", dns.RcodeToString[r.Rcode], answers(r), dns.RcodeToString[tc.rcode], tc.want)
			}
			if len(r.Question) > 1 {
				t.Errorf("answer has %d questions", len(r.Question))
			}
		})
	}

	t.Run("query over 512 bytes on TCP", func(t *testing.T) {
		m := new(dns.Msg).SetQuestion("web.", dns.TypeA)
		m.SetEdns0(1232, false)
		opt := m.IsEdns0()
		opt.Option = append(opt.Option, &dns.EDNS0_LOCAL{Code: 65001, Data: make([]byte, 600)})
		if _, err := exchangeFrom(s, clientA, "tcp", m); err == nil {
			t.Error("answered, want the connection closed")
		}
	})
}

func TestUpdatesAtOnce(t *testing.T) {
	ix := testIndex(t)
	s := startServer(t, ix, Config{})
	check := func(name string, want ...string) {
		t.Helper()
		if got := answers(query(t, s, clientA, "udp", name, dns.TypeA)); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	check("tasks.web.", "10.0.1.10", "10.0.1.11")

	ix.RemoveTask("net-a", "t2")
	check("tasks.web.", "10.0.1.10")

	t1 := Task{NetworkID: "net-a", TaskID: "t1", Name: "web.1", ServiceName: "web", Addr: netip.MustParseAddr("10.0.1.10")}
	if err := ix.SetTask(t1); err != nil { // failed its health check
		t.Fatal(err)
	}
	check("tasks.web.")
	check("web.1.", "10.0.1.10")

	if err := ix.SetService(Service{NetworkID: "net-a", Name: "web", Mode: ModeDNSRR}); err != nil {
		t.Fatal(err)
	}
	check("www.") // the alias left with the service's old record
	check("web.")
	t1.Backend = true
	if err := ix.SetTask(t1); err != nil {
		t.Fatal(err)
	}
	check("web.", "10.0.1.10")

	ix.RemoveTask("net-a", "t1")
	ix.RemoveService("net-a", "web")
	if r := query(t, s, clientA, "udp", "web.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Errorf("removed service: %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
}

// TestConcurrent updates the index while clients query it (run it with
// -race).
func TestConcurrent(t *testing.T) {
	ix := testIndex(t)
	s := startServer(t, ix, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("w%d-%d", w, i%20)
				if i%3 == 2 {
					ix.RemoveTask("net-a", id)
					continue
				}
				err := ix.SetTask(Task{NetworkID: "net-a", TaskID: id, Name: fmt.Sprint("web.", 10+i%20), ServiceName: "web",
					Addr: netip.AddrFrom4([4]byte{10, 0, 4, byte(i % 20)}), Aliases: []string{"db"}, Backend: i%2 == 0})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var queries atomic.Int64
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				for _, name := range []string{"tasks.web.", "db.", "web.", "secret."} {
					r, err := exchangeFrom(s, clientA, "udp", new(dns.Msg).SetQuestion(name, dns.TypeA))
					if err != nil {
						t.Error(err)
						return
					}
					if want := map[bool]int{true: dns.RcodeNameError, false: dns.RcodeSuccess}[name == "secret."]; r.Rcode != want {
						t.Errorf("%s: %s", name, dns.RcodeToString[r.Rcode])
						return
					}
					queries.Add(1)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d queries", queries.Load())
}

func TestNew(t *testing.T) {
	ix := NewIndex()
	hc := &HostConfig{}
	for _, tc := range []struct {
		name string
		cfg  Config
		ix   *Index
	}{
		{"no index", Config{Addrs: []string{"127.0.0.1:0"}, Upstream: hc}, nil},
		{"bad address", Config{Addrs: []string{"127.0.0.1"}, Upstream: hc}, ix},
		{"negative timeout", Config{Addrs: []string{"127.0.0.1:0"}, Upstream: hc, ForwardTimeout: -1}, ix},
		{"missing resolv.conf", Config{Addrs: []string{"127.0.0.1:0"}, ResolvConf: "/nonexistent/resolv.conf"}, ix},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := New(tc.cfg, tc.ix, nil); err == nil {
				s.Close()
				t.Error("New succeeded")
			}
		})
	}

	t.Run("no address is fine", func(t *testing.T) {
		s, err := New(Config{Upstream: hc}, ix, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got := s.Addrs(); len(got) != 0 {
			t.Errorf("Addrs %v, want none", got)
		}
	})

	t.Run("address in use", func(t *testing.T) {
		s := startServer(t, ix, Config{})
		if s2, err := New(Config{Addrs: s.Addrs(), Upstream: hc}, ix, nil); err == nil {
			s2.Close()
			t.Error("New succeeded on an address in use")
		}
	})

	t.Run("never forwards to itself", func(t *testing.T) {
		s, err := New(Config{Addrs: []string{"127.0.0.1:0"}, Upstream: hc}, ix, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		s.setHost(HostConfig{Servers: []string{s.Addrs()[0], "192.0.2.53:53"}})
		if got := s.Host().Servers; !slices.Equal(got, []string{"192.0.2.53:53"}) {
			t.Errorf("servers %v", got)
		}
	})
}

// BenchmarkAnswer is the latency of one answer from the index over UDP on
// loopback, client included: the figure for BENCHMARKS.md is ns/op.
func BenchmarkAnswer(b *testing.B) {
	ix := testIndex(b)
	for i := range 1000 {
		a := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		if err := ix.SetTask(Task{NetworkID: "net-a", TaskID: fmt.Sprint("big", i), Name: fmt.Sprint("big.", i+1), ServiceName: "big", Addr: a, Backend: true}); err != nil {
			b.Fatal(err)
		}
	}
	s := startServer(b, ix, Config{})
	for _, bc := range []struct{ name, q string }{
		{"vip", "web."},
		{"dnsrr-2", "tasks.web."},
		{"task-name", "web.1.t1."},
		{"nxdomain", "secret."},
		{"tasks-1000-truncated", "tasks.big."},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := &dns.Client{Net: "udp", Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(clientA)}}}
			co, err := c.Dial(s.Addrs()[0])
			if err != nil {
				b.Fatal(err)
			}
			defer co.Close()
			m := new(dns.Msg).SetQuestion(bc.q, dns.TypeA)
			for b.Loop() {
				if _, _, err := c.ExchangeWithConn(m, co); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
