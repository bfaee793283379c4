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
	if len(services) > cfg.MaxServices {
		var fe sdk.FieldErrors
		fe.Add("services", "%d services, at most %d", len(services), cfg.MaxServices)
		return nil, fe
	}
	pl := &planner{
		cfg:        cfg,
		rs:         &ruleset{table: cfg.Table, mark: cfg.Mark, localhost: !cfg.NoLocalhost},
		names:      map[string]int{},
		vipOwner:   map[vipKey]string{},
		pubOwner:   map[pubKey]string{},
		vipService: map[netip.Addr]string{},
	}
	for i, s := range services {
		pl.service(fmt.Sprintf("services[%d]", i), i, s)
	}
	if err := pl.fe.Err(); err != nil {
		return nil, err
	}
	pl.rs.sort()
	return pl.rs, nil
}

// vipKey is a service port on a VIP, owned by one service.
type vipKey struct {
	addr  netip.Addr
	proto Protocol
	port  uint16
}

// pubKey is a port, published by one service, or a port of one service.
type pubKey struct {
	proto Protocol
	port  uint16
}

// planner is one run of plan: the ruleset so far, the bad fields found,
// and who owns what among the services already seen.
type planner struct {
	cfg      Config
	rs       *ruleset
	fe       sdk.FieldErrors
	names    map[string]int // service name → its index
	vipOwner map[vipKey]string
	pubOwner map[pubKey]string
	// A VIP is one service's: its ports outside Ports go to that
	// service's Backends, which two services cannot share.
	vipService map[netip.Addr]string
}

// service checks services[i], at field path sf, and adds its entries.
func (pl *planner) service(sf string, i int, s Service) {
	if !nameRE.MatchString(s.Name) {
		pl.fe.Add(sf+".name", "%q is not a name (letters, digits, '.', '_', '-'; at most 64)", s.Name)
	} else if j, dup := pl.names[s.Name]; dup {
		pl.fe.Add(sf+".name", "%q is also services[%d]", s.Name, j)
	} else {
		pl.names[s.Name] = i
	}
	vip := s.VIP.Unmap()
	vipOK := pl.vip(sf, s)
	if len(s.Backends) > pl.cfg.MaxBackends {
		pl.fe.Add(sf+".backends", "%d backends, at most %d", len(s.Backends), pl.cfg.MaxBackends)
	} else {
		addrs := pl.vipBackends(sf, s.Backends)
		// Backends without a VIP are checked, and unused: only a VIP
		// forwards every port.
		if vipOK {
			pl.anyPorts(s.Name, vip, addrs)
		}
	}
	if len(s.Ports) > pl.cfg.MaxPorts {
		pl.fe.Add(sf+".ports", "%d ports, at most %d", len(s.Ports), pl.cfg.MaxPorts)
		return
	}
	ports := map[pubKey]int{}
	for k, p := range s.Ports {
		pl.port(fmt.Sprintf("%s.ports[%d]", sf, k), k, s.Name, vip, p, ports)
	}
}

// vip checks s's VIP, if it has one, and reports whether it is a good one
// that is s's alone.
func (pl *planner) vip(sf string, s Service) bool {
	if !s.VIP.IsValid() {
		return false
	}
	vip := s.VIP.Unmap()
	switch {
	case !vip.Is4():
		pl.fe.Add(sf+".vip", "%s is not IPv4", s.VIP)
	case !vip.IsGlobalUnicast():
		pl.fe.Add(sf+".vip", "%s is not a unicast address", s.VIP)
	default:
		if other, dup := pl.vipService[vip]; dup {
			pl.fe.Add(sf+".vip", "%s is also service %s's", vip, other)
			return false
		}
		pl.vipService[vip] = s.Name
		return true
	}
	return false
}

// vipBackends checks a service's own backends (the addresses a VIP's
// every other port goes to) and returns the good ones, with port 0.
func (pl *planner) vipBackends(sf string, backends []netip.Addr) []netip.AddrPort {
	seen := map[netip.Addr]int{}
	addrs := make([]netip.AddrPort, 0, len(backends))
	for m, be := range backends {
		bf := fmt.Sprintf("%s.backends[%d]", sf, m)
		a := be.Unmap()
		switch {
		case !a.IsValid():
			pl.fe.Add(bf, "is the zero Addr, not an IPv4 address")
			continue
		case !a.Is4():
			pl.fe.Add(bf, "%s is not IPv4", be)
			continue
		case !a.IsGlobalUnicast():
			pl.fe.Add(bf, "%s is not a unicast address", be)
			continue
		}
		if j, dup := seen[a]; dup {
			pl.fe.Add(bf, "%s is also backends[%d]", be, j)
			continue
		}
		seen[a] = m
		addrs = append(addrs, netip.AddrPortFrom(a, 0))
	}
	return addrs
}

// anyPorts adds the all-ports chain of service name's VIP.
func (pl *planner) anyPorts(name string, vip netip.Addr, addrs []netip.AddrPort) {
	chain := chainPrefixVIP + name
	for _, p := range []Protocol{TCP, UDP} {
		pl.rs.anyPorts = append(pl.rs.anyPorts, anyEntry{addr: vip, proto: p, chain: chain})
	}
	slices.SortFunc(addrs, netip.AddrPort.Compare)
	pl.rs.targets = append(pl.rs.targets, target{
		chain:    chain,
		backends: mapPrefixVIPBe + name,
		addrs:    addrs,
		anyPort:  true,
	})
}

// port checks ports[k] of service name, at field path pf, and adds its
// chain and its entries in the VIP and published maps. ports holds the
// service's ports seen so far.
func (pl *planner) port(pf string, k int, name string, vip netip.Addr, p Port, ports map[pubKey]int) {
	if p.Protocol != TCP && p.Protocol != UDP {
		pl.fe.Add(pf+".protocol", "%q is not tcp or udp", p.Protocol)
		return
	}
	if p.Port == 0 {
		pl.fe.Add(pf+".port", "is 0")
	}
	if j, dup := ports[pubKey{p.Protocol, p.Port}]; dup {
		pl.fe.Add(pf+".port", "%s/%d is also ports[%d]", p.Protocol, p.Port, j)
	} else {
		ports[pubKey{p.Protocol, p.Port}] = k
	}
	if len(p.Backends) > pl.cfg.MaxBackends {
		pl.fe.Add(pf+".backends", "%d backends, at most %d", len(p.Backends), pl.cfg.MaxBackends)
		return
	}
	addrs := pl.portBackends(pf, p.Backends)
	if p.Port == 0 {
		return
	}
	chain := fmt.Sprintf("%s%s-%s-%d", chainPrefixSvc, name, p.Protocol, p.Port)
	if vip.IsValid() && vip.Is4() {
		key := vipKey{vip, p.Protocol, p.Port}
		if other, dup := pl.vipOwner[key]; dup {
			pl.fe.Add(pf+".port", "%s:%d/%s is also service %s's", vip, p.Port, p.Protocol, other)
		} else {
			pl.vipOwner[key] = name
			pl.rs.vips = append(pl.rs.vips, vipEntry{addr: vip, proto: p.Protocol, port: p.Port, chain: chain})
		}
	}
	if p.Published != 0 {
		key := pubKey{p.Protocol, p.Published}
		if other, dup := pl.pubOwner[key]; dup {
			pl.fe.Add(pf+".published", "%s/%d is also published by service %s", p.Protocol, p.Published, other)
		} else {
			pl.pubOwner[key] = name
			mc := fmt.Sprintf("%s%s-%s-%d", chainPrefixPub, name, p.Protocol, p.Published)
			pl.rs.published = append(pl.rs.published, pubEntry{proto: p.Protocol, port: p.Published, chain: mc})
			pl.rs.meshes = append(pl.rs.meshes, mesh{chain: mc, target: chain})
		}
	}
	// Sorted, so that the same state renders the same rules.
	slices.SortFunc(addrs, netip.AddrPort.Compare)
	pl.rs.targets = append(pl.rs.targets, target{
		chain:    chain,
		backends: fmt.Sprintf("%s%s-%s-%d", mapPrefixBe, name, p.Protocol, p.Port),
		addrs:    addrs,
	})
}

// portBackends checks a service port's backends and returns the good ones.
func (pl *planner) portBackends(pf string, backends []netip.AddrPort) []netip.AddrPort {
	seen := map[netip.AddrPort]int{}
	addrs := make([]netip.AddrPort, 0, len(backends))
	for m, be := range backends {
		bf := fmt.Sprintf("%s.backends[%d]", pf, m)
		a := be.Addr().Unmap()
		switch {
		case !a.Is4():
			pl.fe.Add(bf, "%s is not an IPv4 address and port", be)
			continue
		case !a.IsGlobalUnicast():
			pl.fe.Add(bf, "%s is not a unicast address", be)
			continue
		case be.Port() == 0:
			pl.fe.Add(bf, "%s has port 0", be)
			continue
		}
		ap := netip.AddrPortFrom(a, be.Port())
		if j, dup := seen[ap]; dup {
			pl.fe.Add(bf, "%s is also backends[%d]", be, j)
			continue
		}
		seen[ap] = m
		addrs = append(addrs, ap)
	}
	return addrs
}

// sort puts the ruleset's lists in their order (see ruleset), so that the
// same state renders the same rules.
func (rs *ruleset) sort() {
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
}
