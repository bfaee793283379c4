package lb

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/shoalhq/shoal/sdk"
)

// ruleset is what a table holds for a desired state, computed without
// touching the kernel: plan makes it, String renders it in nft's syntax
// (what `nft list table` shows, give or take formatting), apply turns it
// into one netlink batch.
type ruleset struct {
	table     string
	mark      uint32
	localhost bool
	vips      []vipEntry // sorted by address, protocol, port
	anyPorts  []anyEntry // sorted by address, protocol
	published []pubEntry // sorted by protocol, port
	targets   []target   // sorted by chain name
	meshes    []mesh     // sorted by chain name
}

// vipEntry is an element of the vips map: VIP . protocol . port → goto
// the service port's chain.
type vipEntry struct {
	addr  netip.Addr
	proto Protocol
	port  uint16
	chain string
}

// anyEntry is an element of the vips-any map: VIP . protocol → goto the
// service's all-ports chain. Keyed on the protocol too, so that only TCP
// and UDP are balanced, in the same lookup.
type anyEntry struct {
	addr  netip.Addr
	proto Protocol
	chain string
}

// pubEntry is an element of the published map: protocol . port → goto the
// mesh chain.
type pubEntry struct {
	proto Protocol
	port  uint16
	chain string
}

// target is one service port, or a VIP's every other port (anyPort): its
// chain DNATs to one of its backends, listed in a map by index for numgen,
// or rejects when there are none. With anyPort, the addrs' ports are 0:
// the backend map holds addresses only, and the DNAT keeps the port the
// client connected to.
type target struct {
	chain    string
	backends string // the map's name
	addrs    []netip.AddrPort
	anyPort  bool
}

// mesh is a published port's chain: mark for masquerade, then the
// service port's chain.
type mesh struct {
	chain  string
	target string
}

// The fixed names in the table.
const (
	vipsMap        = "vips"
	vipsAnyMap     = "vips-any"
	publishedMap   = "published"
	servicesChain  = "services"
	preroutingCh   = "prerouting"
	outputCh       = "output"
	hairpinCh      = "hairpin"
	postroutingCh  = "postrouting"
	localnetCh     = "localnet"
	hairpinPrio    = -99 // just after dstnat (-100): sees the DNATed address
	chainPrefixSvc = "svc-"
	chainPrefixPub = "mesh-"
	mapPrefixBe    = "be-"
	// A VIP's all-ports chain and backend map. Not "svc-NAME" nor
	// "be-NAME": service "a-tcp-80"'s would be service "a"'s port tcp/80's.
	chainPrefixVIP = "vip-"
	mapPrefixVIPBe = "vip-be-"
)

func (rs *ruleset) backendCount() int {
	n := 0
	for _, t := range rs.targets {
		n += len(t.addrs)
	}
	return n
}

// plan checks services against cfg's bounds and computes their ruleset.
// Every bad field is reported, by its path in the input.
func plan(cfg Config, services []Service) (*ruleset, error) {
	var fe sdk.FieldErrors
	if len(services) > cfg.MaxServices {
		fe.Add("services", "%d services, at most %d", len(services), cfg.MaxServices)
		return nil, fe
	}
	rs := &ruleset{table: cfg.Table, mark: cfg.Mark, localhost: !cfg.NoLocalhost}
	names := map[string]int{}
	type vipKey struct {
		addr  netip.Addr
		proto Protocol
		port  uint16
	}
	type pubKey struct {
		proto Protocol
		port  uint16
	}
	vipOwner := map[vipKey]string{}
	pubOwner := map[pubKey]string{}
	// A VIP is one service's: its ports outside Ports go to that
	// service's Backends, which two services cannot share.
	vipService := map[netip.Addr]string{}
	for i, s := range services {
		sf := fmt.Sprintf("services[%d]", i)
		if !nameRE.MatchString(s.Name) {
			fe.Add(sf+".name", "%q is not a name (letters, digits, '.', '_', '-'; at most 64)", s.Name)
		} else if j, dup := names[s.Name]; dup {
			fe.Add(sf+".name", "%q is also services[%d]", s.Name, j)
		} else {
			names[s.Name] = i
		}
		vip := s.VIP.Unmap()
		vipOK := false
		if s.VIP.IsValid() {
			switch {
			case !vip.Is4():
				fe.Add(sf+".vip", "%s is not IPv4", s.VIP)
			case !vip.IsGlobalUnicast():
				fe.Add(sf+".vip", "%s is not a unicast address", s.VIP)
			default:
				if other, dup := vipService[vip]; dup {
					fe.Add(sf+".vip", "%s is also service %s's", vip, other)
				} else {
					vipService[vip] = s.Name
					vipOK = true
				}
			}
		}
		if len(s.Backends) > cfg.MaxBackends {
			fe.Add(sf+".backends", "%d backends, at most %d", len(s.Backends), cfg.MaxBackends)
		} else {
			seen := map[netip.Addr]int{}
			addrs := make([]netip.AddrPort, 0, len(s.Backends))
			for m, be := range s.Backends {
				bf := fmt.Sprintf("%s.backends[%d]", sf, m)
				a := be.Unmap()
				switch {
				case !a.IsValid():
					fe.Add(bf, "is the zero Addr, not an IPv4 address")
					continue
				case !a.Is4():
					fe.Add(bf, "%s is not IPv4", be)
					continue
				case !a.IsGlobalUnicast():
					fe.Add(bf, "%s is not a unicast address", be)
					continue
				}
				if j, dup := seen[a]; dup {
					fe.Add(bf, "%s is also backends[%d]", be, j)
					continue
				}
				seen[a] = m
				addrs = append(addrs, netip.AddrPortFrom(a, 0))
			}
			// Backends without a VIP are checked, and unused: only a VIP
			// forwards every port.
			if vipOK {
				chain := chainPrefixVIP + s.Name
				for _, p := range []Protocol{TCP, UDP} {
					rs.anyPorts = append(rs.anyPorts, anyEntry{addr: vip, proto: p, chain: chain})
				}
				slices.SortFunc(addrs, netip.AddrPort.Compare)
				rs.targets = append(rs.targets, target{
					chain:    chain,
					backends: mapPrefixVIPBe + s.Name,
					addrs:    addrs,
					anyPort:  true,
				})
			}
		}
		if len(s.Ports) > cfg.MaxPorts {
			fe.Add(sf+".ports", "%d ports, at most %d", len(s.Ports), cfg.MaxPorts)
			continue
		}
		ports := map[pubKey]int{}
		for k, p := range s.Ports {
			pf := fmt.Sprintf("%s.ports[%d]", sf, k)
			if p.Protocol != TCP && p.Protocol != UDP {
				fe.Add(pf+".protocol", "%q is not tcp or udp", p.Protocol)
				continue
			}
			if p.Port == 0 {
				fe.Add(pf+".port", "is 0")
			}
			if j, dup := ports[pubKey{p.Protocol, p.Port}]; dup {
				fe.Add(pf+".port", "%s/%d is also ports[%d]", p.Protocol, p.Port, j)
			} else {
				ports[pubKey{p.Protocol, p.Port}] = k
			}
			if len(p.Backends) > cfg.MaxBackends {
				fe.Add(pf+".backends", "%d backends, at most %d", len(p.Backends), cfg.MaxBackends)
				continue
			}
			seen := map[netip.AddrPort]int{}
			addrs := make([]netip.AddrPort, 0, len(p.Backends))
			for m, be := range p.Backends {
				bf := fmt.Sprintf("%s.backends[%d]", pf, m)
				a := be.Addr().Unmap()
				switch {
				case !a.Is4():
					fe.Add(bf, "%s is not an IPv4 address and port", be)
					continue
				case !a.IsGlobalUnicast():
					fe.Add(bf, "%s is not a unicast address", be)
					continue
				case be.Port() == 0:
					fe.Add(bf, "%s has port 0", be)
					continue
				}
				ap := netip.AddrPortFrom(a, be.Port())
				if j, dup := seen[ap]; dup {
					fe.Add(bf, "%s is also backends[%d]", be, j)
					continue
				}
				seen[ap] = m
				addrs = append(addrs, ap)
			}
			if p.Port == 0 {
				continue
			}
			chain := fmt.Sprintf("%s%s-%s-%d", chainPrefixSvc, s.Name, p.Protocol, p.Port)
			if vip.IsValid() && vip.Is4() {
				key := vipKey{vip, p.Protocol, p.Port}
				if other, dup := vipOwner[key]; dup {
					fe.Add(pf+".port", "%s:%d/%s is also service %s's", vip, p.Port, p.Protocol, other)
				} else {
					vipOwner[key] = s.Name
					rs.vips = append(rs.vips, vipEntry{addr: vip, proto: p.Protocol, port: p.Port, chain: chain})
				}
			}
			if p.Published != 0 {
				key := pubKey{p.Protocol, p.Published}
				if other, dup := pubOwner[key]; dup {
					fe.Add(pf+".published", "%s/%d is also published by service %s", p.Protocol, p.Published, other)
				} else {
					pubOwner[key] = s.Name
					mc := fmt.Sprintf("%s%s-%s-%d", chainPrefixPub, s.Name, p.Protocol, p.Published)
					rs.published = append(rs.published, pubEntry{proto: p.Protocol, port: p.Published, chain: mc})
					rs.meshes = append(rs.meshes, mesh{chain: mc, target: chain})
				}
			}
			// Sorted, so that the same state renders the same rules.
			slices.SortFunc(addrs, netip.AddrPort.Compare)
			rs.targets = append(rs.targets, target{
				chain:    chain,
				backends: fmt.Sprintf("%s%s-%s-%d", mapPrefixBe, s.Name, p.Protocol, p.Port),
				addrs:    addrs,
			})
		}
	}
	if err := fe.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(rs.vips, func(a, b vipEntry) int {
		return cmp.Or(a.addr.Compare(b.addr), strings.Compare(string(a.proto), string(b.proto)), cmp.Compare(a.port, b.port))
	})
	slices.SortFunc(rs.anyPorts, func(a, b anyEntry) int {
		return cmp.Or(a.addr.Compare(b.addr), strings.Compare(string(a.proto), string(b.proto)))
	})
	slices.SortFunc(rs.published, func(a, b pubEntry) int {
		return cmp.Or(strings.Compare(string(a.proto), string(b.proto)), cmp.Compare(a.port, b.port))
	})
	slices.SortFunc(rs.targets, func(a, b target) int { return strings.Compare(a.chain, b.chain) })
	slices.SortFunc(rs.meshes, func(a, b mesh) int { return strings.Compare(a.chain, b.chain) })
	return rs, nil
}

// String renders the ruleset in nft's syntax.
func (rs *ruleset) String() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("table ip %s {", rs.table)
	w("\tmap %s {", vipsMap)
	w("\t\ttype ipv4_addr . inet_proto . inet_service : verdict")
	for _, e := range rs.vips {
		w("\t\telement %s . %s . %d : goto %s", e.addr, e.proto, e.port, e.chain)
	}
	w("\t}")
	w("\tmap %s {", vipsAnyMap)
	w("\t\ttype ipv4_addr . inet_proto : verdict")
	for _, e := range rs.anyPorts {
		w("\t\telement %s . %s : goto %s", e.addr, e.proto, e.chain)
	}
	w("\t}")
	w("\tmap %s {", publishedMap)
	w("\t\ttype inet_proto . inet_service : verdict")
	for _, e := range rs.published {
		w("\t\telement %s . %d : goto %s", e.proto, e.port, e.chain)
	}
	w("\t}")
	for _, t := range rs.targets {
		if len(t.addrs) == 0 {
			continue
		}
		w("\tmap %s {", t.backends)
		if t.anyPort {
			w("\t\ttype integer : ipv4_addr")
		} else {
			w("\t\ttype integer : ipv4_addr . inet_service")
		}
		for i, a := range t.addrs {
			if t.anyPort {
				w("\t\telement %d : %s", i, a.Addr())
			} else {
				w("\t\telement %d : %s . %d", i, a.Addr(), a.Port())
			}
		}
		w("\t}")
	}
	w("\tchain %s {", preroutingCh)
	w("\t\ttype nat hook prerouting priority dstnat; policy accept;")
	w("\t\tjump %s", servicesChain)
	w("\t}")
	w("\tchain %s {", outputCh)
	w("\t\ttype nat hook output priority -100; policy accept;")
	w("\t\tjump %s", servicesChain)
	w("\t}")
	w("\tchain %s {", servicesChain)
	w("\t\tip daddr . meta l4proto . th dport vmap @%s", vipsMap)
	w("\t\tip daddr . meta l4proto vmap @%s", vipsAnyMap)
	if rs.localhost {
		w("\t\tfib daddr type local meta l4proto . th dport vmap @%s", publishedMap)
	} else {
		w("\t\tip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport vmap @%s", publishedMap)
	}
	w("\t}")
	for _, t := range rs.targets {
		w("\tchain %s {", t.chain)
		if len(t.addrs) == 0 {
			if t.anyPort {
				w("\t\tmeta l4proto tcp reject with tcp reset")
			}
			w("\t\treject")
		} else {
			w("\t\tip saddr 127.0.0.0/8 meta mark set meta mark | %#x", rs.mark)
			w("\t\tdnat ip to numgen random mod %d map @%s", len(t.addrs), t.backends)
		}
		w("\t}")
	}
	for _, m := range rs.meshes {
		w("\tchain %s {", m.chain)
		w("\t\tmeta mark set meta mark | %#x goto %s", rs.mark, m.target)
		w("\t}")
	}
	w("\tchain %s {", hairpinCh)
	w("\t\ttype filter hook prerouting priority %d; policy accept;", hairpinPrio)
	w("\t\tct state new ct status dnat fib daddr . iif oif != 0 meta mark set meta mark | %#x", rs.mark)
	w("\t}")
	w("\tchain %s {", postroutingCh)
	w("\t\ttype nat hook postrouting priority srcnat; policy accept;")
	w("\t\tmeta mark & %#x == 0 return", rs.mark)
	w("\t\tmeta mark set meta mark & %#x masquerade", ^rs.mark)
	w("\t}")
	if rs.localhost {
		w("\tchain %s {", localnetCh)
		w("\t\ttype filter hook input priority filter; policy accept;")
		w("\t\tiifname != \"lo\" ip daddr 127.0.0.0/8 ct state & (established | related) == 0 ct status & dnat == 0 drop")
		w("\t}")
	}
	w("}")
	return b.String()
}
