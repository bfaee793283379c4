package lb

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/shoalhq/shoal/sdk"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func testConfig() Config {
	return Config{Table: DefaultTable, MaxServices: 3, MaxPorts: 2, MaxBackends: 3, Mark: DefaultMark}
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, x := range s {
		out = append(out, netip.MustParseAddr(x))
	}
	return out
}

func aps(s ...string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, x := range s {
		out = append(out, netip.MustParseAddrPort(x))
	}
	return out
}

// renderServices is the desired state of the rendering tests: out of
// order, with and without a VIP and backends.
func renderServices() []Service {
	return []Service{
		// Out of order: the maps are sorted.
		{Name: "web", VIP: netip.MustParseAddr("10.96.0.5"), Backends: addrs("10.200.5.9", "::ffff:10.200.3.7"), Ports: []Port{
			{Protocol: TCP, Port: 80, Published: 8080, Backends: aps("10.200.5.9:80", "10.200.3.7:80")},
		}},
		// Backends without a VIP: nothing to forward every port of.
		{Name: "mesh-only", Backends: addrs("10.200.3.8"), Ports: []Port{{Protocol: UDP, Port: 53, Published: 5353, Backends: aps("10.200.3.8:53")}}},
		// No Backends: the VIP's other ports are refused.
		{Name: "idle", VIP: netip.MustParseAddr("::ffff:10.96.0.7"), Ports: []Port{{Protocol: TCP, Port: 443}}},
	}
}

// render plans services under cfg and renders the ruleset.
func render(t *testing.T, cfg Config, services []Service) string {
	t.Helper()
	rs, err := plan(cfg, services)
	if err != nil {
		t.Fatal(err)
	}
	return rs.String()
}

// TestPlanRenders: a desired state and the table it becomes
// (testdata/plan.nft; go test -update rewrites it).
func TestPlanRenders(t *testing.T) {
	got := render(t, testConfig(), renderServices())
	const golden = "testdata/plan.nft"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("rendered:\n%s\nwant (%s):\n%s", got, golden, want)
	}
	// The same state in another order renders the same.
	s := renderServices()
	if got := render(t, testConfig(), []Service{s[2], s[1], s[0]}); got != string(want) {
		t.Errorf("another order renders differently:\n%s", got)
	}
}

// TestPlanRendersWithoutLocalhost: no guard, and 127/8 is not a published
// address.
func TestPlanRendersWithoutLocalhost(t *testing.T) {
	cfg := testConfig()
	cfg.NoLocalhost = true
	got := render(t, cfg, renderServices())
	if strings.Contains(got, "chain localnet") || !strings.Contains(got, "ip daddr != 127.0.0.0/8 fib daddr type local") {
		t.Errorf("with NoLocalhost:\n%s", got)
	}
}

// TestPlanRendersEmpty: no services, no elements, and the chains that
// masquerade all the same.
func TestPlanRendersEmpty(t *testing.T) {
	if s := render(t, testConfig(), nil); strings.Contains(s, "element") || !strings.Contains(s, "chain postrouting") {
		t.Errorf("empty state:\n%s", s)
	}
}

// TestPlanRejects: every bad field is named, and nothing is planned.
func TestPlanRejects(t *testing.T) {
	for _, c := range planRejectCases() {
		t.Run(c.name, func(t *testing.T) {
			rs, err := plan(testConfig(), c.services)
			if c.want == nil {
				if err != nil {
					t.Fatalf("plan = %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("plan = %v, want an error", rs)
			}
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Errorf("error %v is not an invalid argument", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// planRejectCase is a bad desired state and what plan's error says of it
// (nil: no error).
type planRejectCase struct {
	name     string
	services []Service
	want     []string // substrings of the error
}

// planRejectCases are the cases of TestPlanRejects: each bad field, on
// its own and all at once.
func planRejectCases() []planRejectCase {
	ok := func() Service {
		return Service{Name: "web", VIP: netip.MustParseAddr("10.96.0.5"), Ports: []Port{
			{Protocol: TCP, Port: 80, Published: 8080, Backends: aps("10.200.3.7:80")},
		}}
	}
	with := func(f func(*Service)) []Service {
		s := ok()
		f(&s)
		return []Service{s}
	}
	return []planRejectCase{
		{"too many services", []Service{ok(), ok(), ok(), ok()}, []string{"services: 4 services, at most 3"}},
		{"bad name", with(func(s *Service) { s.Name = "a b" }), []string{`services[0].name: "a b" is not a name`}},
		{"empty name", with(func(s *Service) { s.Name = "" }), []string{`services[0].name`}},
		{"long name", with(func(s *Service) { s.Name = strings.Repeat("x", 65) }), []string{`services[0].name`}},
		{"duplicate name", []Service{ok(), func() Service {
			s := ok()
			s.VIP = netip.MustParseAddr("10.96.0.6")
			s.Ports[0].Published = 0
			return s
		}()},
			[]string{`services[1].name: "web" is also services[0]`}},
		{"IPv6 VIP", with(func(s *Service) { s.VIP = netip.MustParseAddr("fd00::5") }), []string{"services[0].vip: fd00::5 is not IPv4"}},
		{"loopback VIP", with(func(s *Service) { s.VIP = netip.MustParseAddr("127.0.0.5") }), []string{"services[0].vip: 127.0.0.5 is not a unicast address"}},
		{"too many ports", with(func(s *Service) {
			s.Ports = append(s.Ports, Port{Protocol: TCP, Port: 81}, Port{Protocol: TCP, Port: 82})
		}), []string{"services[0].ports: 3 ports, at most 2"}},
		{"bad protocol", with(func(s *Service) { s.Ports[0].Protocol = "sctp" }), []string{`services[0].ports[0].protocol: "sctp" is not tcp or udp`}},
		{"port 0", with(func(s *Service) { s.Ports[0].Port = 0 }), []string{"services[0].ports[0].port: is 0"}},
		{"duplicate port", with(func(s *Service) { s.Ports = append(s.Ports, Port{Protocol: TCP, Port: 80}) }),
			[]string{"services[0].ports[1].port: tcp/80 is also ports[0]"}},
		{"same port, other protocol", with(func(s *Service) { s.Ports = append(s.Ports, Port{Protocol: UDP, Port: 80}) }), nil},
		{"too many backends", with(func(s *Service) {
			s.Ports[0].Backends = aps("10.200.3.7:80", "10.200.3.8:80", "10.200.3.9:80", "10.200.3.10:80")
		}), []string{"services[0].ports[0].backends: 4 backends, at most 3"}},
		{"IPv6 backend", with(func(s *Service) { s.Ports[0].Backends = aps("[fd00::7]:80") }),
			[]string{"services[0].ports[0].backends[0]: [fd00::7]:80 is not an IPv4 address and port"}},
		{"backend port 0", with(func(s *Service) { s.Ports[0].Backends = aps("10.200.3.7:0") }),
			[]string{"services[0].ports[0].backends[0]: 10.200.3.7:0 has port 0"}},
		{"multicast backend", with(func(s *Service) { s.Ports[0].Backends = aps("224.0.0.1:80") }),
			[]string{"services[0].ports[0].backends[0]: 224.0.0.1:80 is not a unicast address"}},
		{"duplicate backend", with(func(s *Service) { s.Ports[0].Backends = aps("10.200.3.7:80", "10.200.3.8:80", "10.200.3.7:80") }),
			[]string{"services[0].ports[0].backends[2]: 10.200.3.7:80 is also backends[0]"}},
		{"VIP port used twice", []Service{ok(), func() Service { s := ok(); s.Name = "other"; s.Ports[0].Published = 0; return s }()},
			[]string{"services[1].ports[0].port: 10.96.0.5:80/tcp is also service web's"}},
		{"VIP used twice", []Service{ok(), func() Service {
			s := ok()
			s.Name, s.VIP, s.Ports = "other", netip.MustParseAddr("::ffff:10.96.0.5"), nil
			return s
		}()}, []string{"services[1].vip: 10.96.0.5 is also service web's"}},
		{"too many service backends", with(func(s *Service) { s.Backends = addrs("10.200.3.7", "10.200.3.8", "10.200.3.9", "10.200.3.10") }),
			[]string{"services[0].backends: 4 backends, at most 3"}},
		{"IPv6 service backend", with(func(s *Service) { s.Backends = addrs("10.200.3.7", "fd00::7") }),
			[]string{"services[0].backends[1]: fd00::7 is not IPv4"}},
		{"zero service backend", with(func(s *Service) { s.Backends = []netip.Addr{{}} }),
			[]string{"services[0].backends[0]: is the zero Addr"}},
		{"unspecified service backend", with(func(s *Service) { s.Backends = addrs("10.200.3.7", "0.0.0.0") }),
			[]string{"services[0].backends[1]: 0.0.0.0 is not a unicast address"}},
		{"duplicate service backend", with(func(s *Service) { s.Backends = addrs("10.200.3.7", "::ffff:10.200.3.7") }),
			[]string{"services[0].backends[1]: ::ffff:10.200.3.7 is also backends[0]"}},
		{"bad service backends without a VIP", with(func(s *Service) { s.VIP, s.Backends = netip.Addr{}, addrs("224.0.0.1") }),
			[]string{"services[0].backends[0]: 224.0.0.1 is not a unicast address"}},
		{"published port used twice", []Service{ok(), func() Service {
			s := ok()
			s.Name, s.VIP = "other", netip.Addr{}
			return s
		}()}, []string{"services[1].ports[0].published: tcp/8080 is also published by service web"}},
		{"every bad field at once", with(func(s *Service) {
			s.Name = "a/b"
			s.Ports[0].Port = 0
			s.Ports[0].Backends = aps("10.200.3.7:0")
			s.Backends = addrs("10.200.3.7", "fd00::8")
		}), []string{"services[0].name", "services[0].ports[0].port", "services[0].ports[0].backends[0]", "services[0].backends[1]"}},
	}
}

// TestNewRejects: bad configuration is refused before anything happens.
func TestNewRejects(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"table name", Config{Table: "a b"}, "table"},
		{"mark of two bits", Config{Mark: 3}, "mark: 0x3 is not a single bit"},
		{"negative bound", Config{MaxBackends: -1}, "max_backends"},
		{"missing namespace", Config{NetNS: "/nonexistent/netns"}, "open netns /nonexistent/netns"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := New(c.cfg, nil)
			if err == nil {
				b.Close()
				t.Fatalf("New(%+v) succeeded", c.cfg)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("New(%+v) = %v, want it to say %q", c.cfg, err, c.want)
			}
		})
	}
	b, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b.cfg.Table != DefaultTable || b.cfg.Mark != DefaultMark || b.cfg.MaxBackends != DefaultMaxBackends {
		t.Errorf("defaults: %+v", b.cfg)
	}
	// Not synced, not closed: Close of a Balancer that never synced would
	// touch the process's namespace, which this test must not.
}
