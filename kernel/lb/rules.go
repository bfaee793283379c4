package lb

import (
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// This file queues a ruleset's table as netlink messages: its chains, then
// its maps (whose verdicts name the chains), then its rules (which name
// both). render.go is the same table in nft's syntax.

// Registers: reg 1 is the 16-byte register that nft calls reg 1, regs 9
// and 10 are its second and third 32-bit words (NFT_REG32_01, _02), where
// concatenations continue.
const (
	reg1  = 1
	reg9  = 9
	reg10 = 10
)

// From the kernel's headers, missing in x/sys/unix.
const (
	icmpPortUnreach = 3      // ICMP_PORT_UNREACH
	ipsDstNAT       = 1 << 5 // IPS_DST_NAT, ct status dnat
)

var (
	vipKeyType     = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	vipAnyKeyType  = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto)
	pubKeyType     = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	backendType    = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	loopbackPrefix = []byte{127, 0, 0, 0}
	loopbackMask   = []byte{255, 0, 0, 0}
)

// tableChains are the table's chains, as queued.
type tableChains struct {
	services, prerouting, output, hairpin, postrouting *nftables.Chain
	localnet                                           *nftables.Chain   // nil unless rs.localhost
	targets                                            []*nftables.Chain // by rs.targets' index
	meshes                                             []*nftables.Chain // by rs.meshes' index
}

// tableMaps are the table's maps, as queued.
type tableMaps struct {
	vips, vipsAny, published *nftables.Set
	backends                 []*nftables.Set // by rs.targets' index; nil for a target without backends
}

// chains queues rs's chains.
func (bt *batch) chains(rs *ruleset) *tableChains {
	ch := &tableChains{
		services:    bt.chain(servicesChain, nil),
		prerouting:  bt.chain(preroutingCh, &nftables.Chain{Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest}),
		output:      bt.chain(outputCh, &nftables.Chain{Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest}),
		hairpin:     bt.chain(hairpinCh, &nftables.Chain{Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(hairpinPrio)}),
		postrouting: bt.chain(postroutingCh, &nftables.Chain{Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource}),
	}
	if rs.localhost {
		ch.localnet = bt.chain(localnetCh, &nftables.Chain{Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	}
	ch.targets = make([]*nftables.Chain, len(rs.targets))
	for i, t := range rs.targets {
		ch.targets[i] = bt.chain(t.chain, nil)
	}
	ch.meshes = make([]*nftables.Chain, len(rs.meshes))
	for i, m := range rs.meshes {
		ch.meshes[i] = bt.chain(m.chain, nil)
	}
	return ch
}

// maps queues rs's maps with their elements: the three verdict maps of
// the services chain, then each target's backends.
func (bt *batch) maps(rs *ruleset) *tableMaps {
	m := &tableMaps{}
	elems := make([]nftables.SetElement, 0, len(rs.vips))
	for _, e := range rs.vips {
		a := e.addr.As4()
		key := make([]byte, 0, 12)
		key = append(key, a[:]...)
		key = append(key, e.proto.number(), 0, 0, 0)
		key = append(key, byte(e.port>>8), byte(e.port), 0, 0)
		elems = append(elems, nftables.SetElement{Key: key, VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: e.chain}})
	}
	m.vips = bt.set(&nftables.Set{Name: vipsMap, IsMap: true, Concatenation: true, KeyType: vipKeyType, DataType: nftables.TypeVerdict}, elems)
	elems = make([]nftables.SetElement, 0, len(rs.anyPorts))
	for _, e := range rs.anyPorts {
		a := e.addr.As4()
		key := make([]byte, 0, 8)
		key = append(key, a[:]...)
		key = append(key, e.proto.number(), 0, 0, 0)
		elems = append(elems, nftables.SetElement{Key: key, VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: e.chain}})
	}
	m.vipsAny = bt.set(&nftables.Set{Name: vipsAnyMap, IsMap: true, Concatenation: true, KeyType: vipAnyKeyType, DataType: nftables.TypeVerdict}, elems)
	elems = make([]nftables.SetElement, 0, len(rs.published))
	for _, e := range rs.published {
		key := []byte{e.proto.number(), 0, 0, 0, byte(e.port >> 8), byte(e.port), 0, 0}
		elems = append(elems, nftables.SetElement{Key: key, VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: e.chain}})
	}
	m.published = bt.set(&nftables.Set{Name: publishedMap, IsMap: true, Concatenation: true, KeyType: pubKeyType, DataType: nftables.TypeVerdict}, elems)
	m.backends = make([]*nftables.Set, len(rs.targets))
	for i, t := range rs.targets {
		if len(t.addrs) > 0 {
			m.backends[i] = bt.backendMap(t)
		}
	}
	return m
}

// backendMap queues t's map of backends, by index for numgen: address
// and port, or the address alone for a VIP's every other port.
func (bt *batch) backendMap(t target) *nftables.Set {
	elems := make([]nftables.SetElement, len(t.addrs))
	for k, ap := range t.addrs {
		a := ap.Addr().As4()
		val := make([]byte, 0, 8)
		val = append(val, a[:]...)
		if !t.anyPort {
			val = append(val, byte(ap.Port()>>8), byte(ap.Port()), 0, 0)
		}
		elems[k] = nftables.SetElement{Key: binaryutil.NativeEndian.PutUint32(uint32(k)), Val: val}
	}
	dt := backendType
	if t.anyPort {
		dt = nftables.TypeIPAddr
	}
	return bt.set(&nftables.Set{Name: t.backends, IsMap: true, KeyType: nftables.TypeInteger, KeyByteOrder: binaryutil.NativeEndian, DataType: dt}, elems)
}

// serviceRules queues the hooks' jumps to the services chain and its
// three lookups: VIP and port, VIP alone, published port.
func (bt *batch) serviceRules(rs *ruleset, ch *tableChains, m *tableMaps) {
	jump := &expr.Verdict{Kind: expr.VerdictJump, Chain: servicesChain}
	bt.rule(ch.prerouting, jump)
	bt.rule(ch.output, jump)
	bt.rule(ch.services,
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg9},
		&expr.Payload{DestRegister: reg10, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: reg1, SetName: m.vips.Name, SetID: m.vips.ID, IsDestRegSet: true, DestRegister: 0},
	)
	// Only when the exact lookup found nothing: its goto leaves the chain.
	bt.rule(ch.services,
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg9},
		&expr.Lookup{SourceRegister: reg1, SetName: m.vipsAny.Name, SetID: m.vipsAny.ID, IsDestRegSet: true, DestRegister: 0},
	)
	var pub []expr.Any
	if !rs.localhost {
		pub = append(pub, loopback(expr.CmpOpNeq, 16)...)
	}
	pub = append(pub,
		&expr.Fib{Register: reg1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Payload{DestRegister: reg9, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: reg1, SetName: m.published.Name, SetID: m.published.ID, IsDestRegSet: true, DestRegister: 0},
	)
	bt.rule(ch.services, pub...)
}

// targetRules queues each target's DNAT (or refusal, without backends)
// and each mesh chain's mark and goto.
func (bt *batch) targetRules(rs *ruleset, ch *tableChains, m *tableMaps) {
	for i, t := range rs.targets {
		c := ch.targets[i]
		if len(t.addrs) == 0 {
			if t.anyPort {
				// A reset, not an ICMP error: the kernel rate-limits those
				// per client (1/s after a burst of 6), and the redirects it
				// sends a client whose connections hairpin spend the same
				// budget, so a refused connection could wait for a SYN
				// retransmit (tested).
				bt.rule(c,
					&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_TCP}},
					&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
				)
			}
			bt.rule(c, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: icmpPortUnreach})
			continue
		}
		bt.rule(c, append(loopback(expr.CmpOpEq, 12), setMark(rs.mark)...)...)
		be := m.backends[i]
		nat := &expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegProtoMin: reg9}
		if t.anyPort {
			nat.RegProtoMin = 0 // the address alone: the port stays the client's
		}
		bt.rule(c,
			&expr.Numgen{Register: reg1, Modulus: uint32(len(t.addrs)), Type: unix.NFT_NG_RANDOM},
			&expr.Lookup{SourceRegister: reg1, SetName: be.Name, SetID: be.ID, IsDestRegSet: true, DestRegister: reg1},
			nat,
		)
	}
	for i, ms := range rs.meshes {
		bt.rule(ch.meshes[i], append(setMark(rs.mark), &expr.Verdict{Kind: expr.VerdictGoto, Chain: ms.target})...)
	}
}

// masqueradeRules queues the marking of hairpinned connections, the
// masquerade of marked ones, and, with rs.localhost, the drop of packets
// to 127/8 from outside that this table did not DNAT.
func (bt *batch) masqueradeRules(rs *ruleset, ch *tableChains) {
	bt.rule(ch.hairpin, append([]expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: u32(expr.CtStateBitNEW), Xor: u32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: u32(0)},
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: u32(ipsDstNAT), Xor: u32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: u32(0)},
		// The route to the (DNATed) destination leaves by the interface
		// the packet came in on: the backend would answer the client
		// directly, past this node's conntrack.
		&expr.Fib{Register: reg1, FlagDADDR: true, FlagIIF: true, ResultOIF: true},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: u32(0)},
	}, setMark(rs.mark)...)...)
	bt.rule(ch.postrouting,
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: u32(rs.mark), Xor: u32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: u32(0)},
		&expr.Verdict{Kind: expr.VerdictReturn},
	)
	bt.rule(ch.postrouting,
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: u32(^rs.mark), Xor: u32(0)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
		&expr.Masq{},
	)
	if ch.localnet == nil {
		return
	}
	lo := make([]byte, unix.IFNAMSIZ)
	copy(lo, "lo")
	bt.rule(ch.localnet, append([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: lo},
	}, append(loopback(expr.CmpOpEq, 16),
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: u32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: u32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: u32(0)},
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: u32(ipsDstNAT), Xor: u32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: u32(0)},
		&expr.Verdict{Kind: expr.VerdictDrop},
	)...)...)
}

// loopback matches an address in 127.0.0.0/8 (op Eq) or outside it (Neq),
// the source (offset 12) or the destination (16).
func loopback(op expr.CmpOp, offset uint32) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: loopbackMask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: op, Register: reg1, Data: loopbackPrefix},
	}
}

// setMark is `meta mark set meta mark | mark`.
func setMark(mark uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: u32(^mark), Xor: u32(mark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
	}
}

func u32(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }
