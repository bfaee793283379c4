package main

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/ipam"
	ipamv1 "github.com/shoalhq/shoal/sdk/proto/shoal/ipam/v1"
)

// Config is the plugin's [plugins.ipam.config] table.
type Config struct {
	// DefaultPool is the IPv4 block that networks without a subnet of their
	// own take theirs from. Default: "10.192.0.0/12".
	DefaultPool string `toml:"default_pool"`
	// DefaultPrefixLen is the prefix length of the subnets taken from
	// DefaultPool. Default: 16.
	DefaultPrefixLen int `toml:"default_prefix_len"`
	// NodePrefixLen is the prefix length of a node's slice, for networks
	// whose spec leaves it unset. Default: 24.
	NodePrefixLen int `toml:"node_prefix_len"`
}

// DefaultConfig returns the settings used when the table is unset.
func DefaultConfig() Config {
	return Config{DefaultPool: "10.192.0.0/12", DefaultPrefixLen: 16, NodePrefixLen: 24}
}

// check validates the settings, naming the bad keys.
func (c Config) check() (netip.Prefix, error) {
	var fe sdk.FieldErrors
	pool, err := parseSubnet(c.DefaultPool)
	if err != nil {
		fe.Add("config.default_pool", "%s", err.Error())
	}
	if err == nil && (c.DefaultPrefixLen < pool.Bits() || c.DefaultPrefixLen > maxNodePrefixLen-1) {
		fe.Add("config.default_prefix_len", "must be between the pool's /%d and %d, got %d", pool.Bits(), maxNodePrefixLen-1, c.DefaultPrefixLen)
	}
	if c.NodePrefixLen < minNodePrefixLen || c.NodePrefixLen > maxNodePrefixLen {
		fe.Add("config.node_prefix_len", "must be between %d and %d, got %d", minNodePrefixLen, maxNodePrefixLen, c.NodePrefixLen)
	} else if err == nil && c.NodePrefixLen <= c.DefaultPrefixLen {
		fe.Add("config.node_prefix_len", "must be longer than default_prefix_len (%d), got %d", c.DefaultPrefixLen, c.NodePrefixLen)
	}
	return pool, fe.Err()
}

// Pools is the IPAM plugin's state. The kernel calls it from one goroutine
// at a time; a mutex makes concurrent calls safe anyway.
type Pools struct {
	mu   sync.Mutex
	cfg  Config
	pool netip.Prefix
	// restoreID is the last Restore's; 0 until the first.
	restoreID uint64
	nets      map[string]*network
}

var (
	_ ipam.IPAM       = (*Pools)(nil)
	_ ipam.Configurer = (*Pools)(nil)
)

// New returns an IPAM with the default settings, not yet restored.
func New() *Pools {
	cfg := DefaultConfig()
	pool, _ := cfg.check()
	return &Pools{cfg: cfg, pool: pool, nets: map[string]*network{}}
}

// Configure decodes the plugin's settings strictly: an unknown key or a bad
// value is an error naming it. An empty config restores the defaults.
func (p *Pools) Configure(_ context.Context, config []byte) error {
	cfg := DefaultConfig()
	if err := sdk.DecodeConfig(config, &cfg); err != nil {
		return fmt.Errorf("configure: %w", err)
	}
	pool, err := cfg.check()
	if err != nil {
		return fmt.Errorf("configure: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg, p.pool = cfg, pool
	return nil
}

// Restore replaces everything held with req's allocations. An inconsistent
// request changes nothing and leaves the plugin as it was.
func (p *Pools) Restore(ctx context.Context, req *ipamv1.RestoreRequest) (*ipamv1.RestoreResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if req.GetRestoreId() == 0 {
		return nil, fmt.Errorf("restore: %w", sdk.FieldErrors{{Field: "restore_id", Message: "must not be 0"}})
	}
	nets, err := load(req)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nets, p.restoreID = nets, req.GetRestoreId()
	return &ipamv1.RestoreResponse{}, nil
}

// load builds the networks a restore describes, checking them.
func load(req *ipamv1.RestoreRequest) (map[string]*network, error) {
	var fe sdk.FieldErrors
	nets := map[string]*network{}
	var subnets []*network
	for i, ns := range req.GetNetworks() {
		f := fmt.Sprintf("networks[%d]", i)
		id := ns.GetNetworkId()
		if id == "" {
			fe.Add(f+".network_id", "is required")
			continue
		}
		if nets[id] != nil {
			fe.Add(f+".network_id", "network %s is listed twice", id)
			continue
		}
		subnet, err := parseSubnet(ns.GetSubnet())
		if err != nil {
			fe.Add(f+".subnet", "%s", err.Error())
			continue
		}
		if msg := checkSlicing(subnet, int(ns.GetNodePrefixLen())); msg != "" {
			fe.Add(f+".node_prefix_len", "%s", msg)
			continue
		}
		if o := overlapping(subnets, subnet); o != nil {
			fe.Add(f+".subnet", "%s overlaps network %s's %s", subnet, o.id, o.subnet)
			continue
		}
		n := newNetwork(id, subnet, int(ns.GetNodePrefixLen()))
		for _, node := range slices.Sorted(maps.Keys(ns.GetNodeSubnets())) {
			nf := fmt.Sprintf("%s.node_subnets[%q]", f, node)
			sp, err := parseSubnet(ns.GetNodeSubnets()[node])
			if err != nil || sp.Bits() != n.nodeBits || !subnet.Contains(sp.Addr()) {
				fe.Add(nf, "%q is not a /%d slice of %s", ns.GetNodeSubnets()[node], n.nodeBits, subnet)
				continue
			}
			index := (u32(sp.Addr()) - u32(subnet.Addr())) >> (32 - n.nodeBits)
			if index == 0 {
				fe.Add(nf, "%s is the virtual IP slice", sp)
				continue
			}
			if other := n.byIndex[index]; other != nil {
				fe.Add(nf, "%s is also node %s's", sp, other.node)
				continue
			}
			s := n.sliceAt(index, node)
			n.nodes[node], n.byIndex[index] = s, s
		}
		nets[id] = n
		subnets = append(subnets, n)
	}
	for i, as := range req.GetAddresses() {
		f := fmt.Sprintf("addresses[%d]", i)
		n := nets[as.GetNetworkId()]
		if n == nil {
			fe.Add(f+".network_id", "network %q is not in networks", as.GetNetworkId())
			continue
		}
		if as.GetOwner() == "" {
			fe.Add(f+".owner", "is required")
			continue
		}
		if h, ok := n.owners[as.GetOwner()]; ok {
			fe.Add(f+".owner", "%s already holds %s on network %s", as.GetOwner(), n.cidr(h.s, h.off), n.id)
			continue
		}
		s := n.vips
		if as.GetNodeId() != "" {
			if s = n.nodes[as.GetNodeId()]; s == nil {
				fe.Add(f+".node_id", "node %s has no slice of network %s", as.GetNodeId(), n.id)
				continue
			}
		}
		ap, err := netip.ParsePrefix(as.GetAddr())
		if err != nil || !ap.Addr().Is4() || ap.Bits() != n.subnet.Bits() {
			fe.Add(f+".addr", "%q is not an address in CIDR form with the network's /%d", as.GetAddr(), n.subnet.Bits())
			continue
		}
		a := u32(ap.Addr())
		lo, hi := s.hosts()
		if a < s.first+lo || a > s.first+hi {
			fe.Add(f+".addr", "%s is not a host address of %s", ap.Addr(), n.prefix(s))
			continue
		}
		off := a - s.first
		if other, ok := s.used[off]; ok {
			fe.Add(f+".addr", "%s is held by %s too", ap.Addr(), other)
			continue
		}
		s.used[off] = as.GetOwner()
		s.cursor = max(s.cursor, off)
		n.owners[as.GetOwner()] = holding{s: s, off: off}
	}
	if err := fe.Err(); err != nil {
		return nil, err
	}
	return nets, nil
}

// overlapping returns the network of nets whose subnet overlaps p, or nil.
func overlapping(nets []*network, p netip.Prefix) *network {
	for _, n := range nets {
		if n.subnet.Overlaps(p) {
			return n
		}
	}
	return nil
}

// restored checks that a request names the restore held.
func (p *Pools) restored(id uint64) error {
	switch {
	case p.restoreID == 0:
		return fmt.Errorf("not restored since the plugin started: %w", sdk.ErrFailedPrecondition)
	case id != p.restoreID:
		return fmt.Errorf("restore %d is not the one held (%d): %w", id, p.restoreID, sdk.ErrFailedPrecondition)
	}
	return nil
}

// Allocate serves a batch: subnets first, then addresses, each item its own
// result.
func (p *Pools) Allocate(ctx context.Context, req *ipamv1.AllocateRequest) (*ipamv1.AllocateResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("allocate: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.restored(req.GetRestoreId()); err != nil {
		return nil, fmt.Errorf("allocate: %w", err)
	}
	resp := &ipamv1.AllocateResponse{
		Subnets:   make([]*ipamv1.SubnetResult, len(req.GetSubnets())),
		Addresses: make([]*ipamv1.AddressResult, len(req.GetAddresses())),
	}
	// Subnets asked for by name go first, so that a default one cannot
	// take a block a user named in the same batch.
	for pass := range 2 {
		for i, sr := range req.GetSubnets() {
			if (sr.GetSubnet() != "") == (pass == 0) {
				resp.Subnets[i] = p.subnet(sr)
			}
		}
	}
	for i, ar := range req.GetAddresses() {
		resp.Addresses[i] = p.address(ar)
	}
	return resp, nil
}

func (p *Pools) subnet(sr *ipamv1.SubnetRequest) *ipamv1.SubnetResult {
	res := &ipamv1.SubnetResult{NetworkId: sr.GetNetworkId()}
	fail := func(format string, args ...any) *ipamv1.SubnetResult {
		res.Error = fmt.Sprintf(format, args...)
		return res
	}
	if sr.GetNetworkId() == "" {
		return fail("network_id is required")
	}
	nodeBits := int(sr.GetNodePrefixLen())
	if nodeBits == 0 {
		nodeBits = p.cfg.NodePrefixLen
	}
	if n := p.nets[sr.GetNetworkId()]; n != nil {
		if (sr.GetSubnet() != "" && sr.GetSubnet() != n.subnet.String()) || nodeBits != n.nodeBits {
			return fail("network %s already holds %s in /%d slices", n.id, n.subnet, n.nodeBits)
		}
		res.Subnet, res.NodePrefixLen = n.subnet.String(), uint32(n.nodeBits)
		return res
	}
	all := slices.Collect(maps.Values(p.nets))
	var subnet netip.Prefix
	if sr.GetSubnet() != "" {
		var err error
		if subnet, err = parseSubnet(sr.GetSubnet()); err != nil {
			return fail("subnet %s", err.Error())
		}
		if o := overlapping(all, subnet); o != nil {
			return fail("subnet %s overlaps network %s's %s", subnet, o.id, o.subnet)
		}
	} else {
		size := uint64(1) << (32 - p.cfg.DefaultPrefixLen)
		count := uint64(1) << (p.cfg.DefaultPrefixLen - p.pool.Bits())
		base := uint64(u32(p.pool.Addr()))
		found := false
		for i := range count {
			c := netip.PrefixFrom(addrOf(uint32(base+i*size)), p.cfg.DefaultPrefixLen)
			if overlapping(all, c) == nil {
				subnet, found = c, true
				break
			}
		}
		if !found {
			return fail("default pool %s has no free /%d left", p.pool, p.cfg.DefaultPrefixLen)
		}
	}
	if msg := checkSlicing(subnet, nodeBits); msg != "" {
		return fail("%s", msg)
	}
	n := newNetwork(sr.GetNetworkId(), subnet, nodeBits)
	p.nets[n.id] = n
	res.Subnet, res.NodePrefixLen = subnet.String(), uint32(nodeBits)
	return res
}

func (p *Pools) address(ar *ipamv1.AddressRequest) *ipamv1.AddressResult {
	res := &ipamv1.AddressResult{NetworkId: ar.GetNetworkId(), Owner: ar.GetOwner(), NodeId: ar.GetNodeId()}
	fail := func(format string, args ...any) *ipamv1.AddressResult {
		res.Error = fmt.Sprintf(format, args...)
		return res
	}
	n := p.nets[ar.GetNetworkId()]
	switch {
	case n == nil:
		return fail("network %q has no subnet", ar.GetNetworkId())
	case ar.GetOwner() == "":
		return fail("owner is required")
	}
	fill := func(h holding) *ipamv1.AddressResult {
		res.Addr = n.cidr(h.s, h.off)
		if h.s.node != "" {
			res.NodeSubnet, res.Gateway = n.prefix(h.s).String(), n.gateway(h.s)
		}
		return res
	}
	if h, ok := n.owners[ar.GetOwner()]; ok {
		if h.s.node != ar.GetNodeId() {
			where := "as a virtual IP"
			if h.s.node != "" {
				where = "on node " + h.s.node
			}
			return fail("%s already holds %s on network %s %s", ar.GetOwner(), n.cidr(h.s, h.off), n.id, where)
		}
		return fill(h)
	}
	s := n.vips
	if ar.GetNodeId() != "" {
		var err error
		if s, err = n.nodeSlice(ar.GetNodeId()); err != nil {
			return fail("%s", err.Error())
		}
	}
	off, err := n.take(s, ar.GetOwner())
	if err != nil {
		return fail("%s", err.Error())
	}
	return fill(holding{s: s, off: off})
}

// Release frees what req names: networks, node slices, addresses.
func (p *Pools) Release(ctx context.Context, req *ipamv1.ReleaseRequest) (*ipamv1.ReleaseResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.restored(req.GetRestoreId()); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	for _, a := range req.GetAddresses() {
		if n := p.nets[a.GetNetworkId()]; n != nil {
			n.free(a.GetOwner())
		}
	}
	for _, ns := range req.GetNodeSubnets() {
		if n := p.nets[ns.GetNetworkId()]; n != nil {
			n.freeNode(ns.GetNodeId())
		}
	}
	for _, id := range req.GetNetworks() {
		delete(p.nets, id)
	}
	return &ipamv1.ReleaseResponse{}, nil
}
