package main

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// minNodePrefixLen and maxNodePrefixLen bound a node's slice: a /30 holds
// a gateway and one task between its network and broadcast addresses; a
// slice of /8 or more would leave a network too few of them to matter.
const (
	minNodePrefixLen = 8
	maxNodePrefixLen = 30
)

// network is one network's subnet, its slices and who holds what in them.
type network struct {
	id       string
	subnet   netip.Prefix
	nodeBits int
	// vips is slice 0, the services' virtual IPs.
	vips *slice
	// nodes are the nodes' slices, by node ID; byIndex the same by index.
	nodes   map[string]*slice
	byIndex map[uint32]*slice
	// hint is the lowest slice index that may be free.
	hint uint32
	// owners is what each owner holds.
	owners map[string]holding
}

// holding is one owner's address: its slice and offset in it.
type holding struct {
	s   *slice
	off uint32
}

// slice is a block of node_prefix_len inside a network's subnet.
type slice struct {
	index uint32
	node  string // "" for the virtual IP slice
	first uint32 // its first address, as a number
	size  uint32
	// used maps the offsets handed out to their owners.
	used map[uint32]string
	// cursor is the offset last handed out: the next search starts after
	// it (round-robin).
	cursor uint32
}

func newNetwork(id string, subnet netip.Prefix, nodeBits int) *network {
	n := &network{
		id: id, subnet: subnet, nodeBits: nodeBits,
		nodes: map[string]*slice{}, byIndex: map[uint32]*slice{},
		hint: 1, owners: map[string]holding{},
	}
	n.vips = n.sliceAt(0, "")
	n.byIndex[0] = n.vips
	return n
}

// checkSlicing tells what is wrong with slicing subnet into nodeBits
// slices, or "".
func checkSlicing(subnet netip.Prefix, nodeBits int) string {
	switch {
	case nodeBits < minNodePrefixLen || nodeBits > maxNodePrefixLen:
		return fmt.Sprintf("node_prefix_len must be between %d and %d, got %d", minNodePrefixLen, maxNodePrefixLen, nodeBits)
	case nodeBits <= subnet.Bits():
		return fmt.Sprintf("node_prefix_len %d must be longer than the subnet's /%d: the subnet holds a slice for virtual IPs and one per node", nodeBits, subnet.Bits())
	}
	return ""
}

// parseSubnet parses an IPv4 network prefix, which must be in canonical
// form (no host bits set).
func parseSubnet(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		return p, fmt.Errorf("%q is not a CIDR subnet such as 10.200.0.0/16", s)
	case !p.Addr().Is4():
		return p, fmt.Errorf("%q is not IPv4: only IPv4 networks are supported", s)
	case p.Masked() != p:
		return p, fmt.Errorf("%q has host bits set; the subnet is %s", s, p.Masked())
	case p.Bits() > maxNodePrefixLen-1:
		return p, fmt.Errorf("%q is too small: a subnet must be /%d or larger", s, maxNodePrefixLen-1)
	}
	return p, nil
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func addrOf(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// slices is how many slices the subnet holds.
func (n *network) slices() uint64 { return 1 << (n.nodeBits - n.subnet.Bits()) }

func (n *network) sliceAt(index uint32, node string) *slice {
	size := uint32(1) << (32 - n.nodeBits)
	return &slice{index: index, node: node, first: u32(n.subnet.Addr()) + index*size, size: size, used: map[uint32]string{}}
}

// prefix is the slice as a CIDR.
func (n *network) prefix(s *slice) netip.Prefix { return netip.PrefixFrom(addrOf(s.first), n.nodeBits) }

// cidr is the address at off in s with the network's prefix length.
func (n *network) cidr(s *slice, off uint32) string {
	return netip.PrefixFrom(addrOf(s.first+off), n.subnet.Bits()).String()
}

// gateway is a node slice's first address.
func (n *network) gateway(s *slice) string { return addrOf(s.first + 1).String() }

// hosts is the range of offsets a slice hands out: in the virtual IP slice
// every address but the first and last; in a node's, also not the gateway.
func (s *slice) hosts() (lo, hi uint32) {
	if s.node == "" {
		return 1, s.size - 2
	}
	return 2, s.size - 2
}

// nodeSlice returns node's slice, allocating the lowest free one.
func (n *network) nodeSlice(node string) (*slice, error) {
	if s := n.nodes[node]; s != nil {
		return s, nil
	}
	total := n.slices()
	for i := uint64(n.hint); i < total; i++ {
		if n.byIndex[uint32(i)] != nil {
			continue
		}
		s := n.sliceAt(uint32(i), node)
		n.nodes[node], n.byIndex[s.index] = s, s
		n.hint = s.index + 1
		return s, nil
	}
	return nil, fmt.Errorf("network %s (%s) has no free /%d slice left for node %s: all %d are held", n.id, n.subnet, n.nodeBits, node, total-1)
}

// take hands out the next free address of s to owner, round-robin.
func (n *network) take(s *slice, owner string) (uint32, error) {
	lo, hi := s.hosts()
	if uint32(len(s.used)) >= hi-lo+1 {
		what := "node " + s.node + "'s slice " + n.prefix(s).String()
		if s.node == "" {
			what = "the virtual IP slice " + n.prefix(s).String()
		}
		return 0, fmt.Errorf("network %s: %s is full (%d addresses)", n.id, what, hi-lo+1)
	}
	off := s.cursor
	for {
		off++
		if off < lo || off > hi {
			off = lo
		}
		if _, ok := s.used[off]; !ok {
			break
		}
	}
	s.used[off], s.cursor = owner, off
	n.owners[owner] = holding{s: s, off: off}
	return off, nil
}

// free releases what owner holds.
func (n *network) free(owner string) {
	h, ok := n.owners[owner]
	if !ok {
		return
	}
	delete(h.s.used, h.off)
	delete(n.owners, owner)
}

// freeNode releases node's slice and every address in it.
func (n *network) freeNode(node string) {
	s := n.nodes[node]
	if s == nil {
		return
	}
	for _, owner := range s.used {
		delete(n.owners, owner)
	}
	delete(n.nodes, node)
	delete(n.byIndex, s.index)
	n.hint = min(n.hint, s.index)
}
