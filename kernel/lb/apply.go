package lb

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

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

// elemsPerMsg bounds the elements of one NEWSETELEM message: the element
// list is one netlink attribute, whose length is 16 bits.
const elemsPerMsg = 512

var (
	vipKeyType     = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	vipAnyKeyType  = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto)
	pubKeyType     = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	backendType    = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	loopbackPrefix = []byte{127, 0, 0, 0}
	loopbackMask   = []byte{255, 0, 0, 0}
)

// batch queues one transaction on a Conn and counts what it queued, to size
// the socket's buffers: the kernel takes the whole batch in one sendmsg and
// queues an ack per message before the first is read.
type batch struct {
	c           *nftables.Conn
	table       *nftables.Table
	msgs, elems int
	err         error // of queueing; reported by flush
}

func (b *Balancer) newBatch(table string) (*batch, error) {
	bt := &batch{table: &nftables.Table{Family: nftables.TableFamilyIPv4, Name: table}}
	opts := []nftables.ConnOption{nftables.WithSockOptions(bt.sizeBuffers)}
	if b.ns >= 0 {
		opts = append(opts, nftables.WithNetNSFd(int(b.ns)))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	bt.c = c
	return bt, nil
}

// sizeBuffers runs when Flush dials: by then the batch is complete.
func (bt *batch) sizeBuffers(c *netlink.Conn) error {
	const floor = 256 << 10
	snd := floor + bt.msgs*512 + bt.elems*128
	rcv := floor + bt.msgs*1024
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for _, o := range []struct{ force, plain, n int }{
			{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, snd},
			{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, rcv},
		} {
			if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o.force, o.n); err != nil {
				// Without CAP_NET_ADMIN: as much as the limits allow.
				if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o.plain, o.n); err != nil {
					serr = err
				}
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("socket buffers: %w", serr)
	}
	return nil
}

func (bt *batch) flush() error {
	if bt.err != nil {
		return bt.err
	}
	if err := bt.c.Flush(); err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	return nil
}

// recreateTable queues the table's removal and creation: adding first makes
// the removal valid when the table does not exist yet.
func (bt *batch) recreateTable() {
	bt.c.AddTable(bt.table)
	bt.c.DelTable(bt.table)
	bt.c.AddTable(bt.table)
	bt.msgs += 3
}

func (bt *batch) chain(name string, base *nftables.Chain) *nftables.Chain {
	ch := &nftables.Chain{Name: name, Table: bt.table}
	if base != nil {
		ch.Type, ch.Hooknum, ch.Priority = base.Type, base.Hooknum, base.Priority
		accept := nftables.ChainPolicyAccept
		ch.Policy = &accept
	}
	bt.msgs++
	return bt.c.AddChain(ch)
}

func (bt *batch) rule(ch *nftables.Chain, exprs ...expr.Any) {
	bt.msgs++
	bt.c.AddRule(&nftables.Rule{Table: bt.table, Chain: ch, Exprs: exprs})
}

// set adds a named set with its elements, elemsPerMsg to a message.
func (bt *batch) set(s *nftables.Set, elems []nftables.SetElement) *nftables.Set {
	s.Table = bt.table
	if err := bt.c.AddSet(s, nil); err != nil && bt.err == nil {
		bt.err = fmt.Errorf("set %s: %w", s.Name, err)
	}
	bt.msgs++
	for len(elems) > 0 {
		n := min(len(elems), elemsPerMsg)
		if err := bt.c.SetAddElements(s, elems[:n]); err != nil && bt.err == nil {
			bt.err = fmt.Errorf("set %s: %w", s.Name, err)
		}
		bt.msgs++
		bt.elems += n
		elems = elems[n:]
	}
	return s
}

// apply replaces the table with rs in one transaction.
func (b *Balancer) apply(rs *ruleset) error {
	bt, err := b.newBatch(rs.table)
	if err != nil {
		return err
	}
	bt.recreateTable()

	// Chains first: the maps' verdicts and the rules name them.
	services := bt.chain(servicesChain, nil)
	prerouting := bt.chain(preroutingCh, &nftables.Chain{Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	output := bt.chain(outputCh, &nftables.Chain{Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	hairpin := bt.chain(hairpinCh, &nftables.Chain{Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(hairpinPrio)})
	postrouting := bt.chain(postroutingCh, &nftables.Chain{Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	var localnet *nftables.Chain
	if rs.localhost {
		localnet = bt.chain(localnetCh, &nftables.Chain{Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	}
	targets := make([]*nftables.Chain, len(rs.targets))
	for i, t := range rs.targets {
		targets[i] = bt.chain(t.chain, nil)
	}
	meshes := make([]*nftables.Chain, len(rs.meshes))
	for i, m := range rs.meshes {
		meshes[i] = bt.chain(m.chain, nil)
	}

	// Maps.
	elems := make([]nftables.SetElement, 0, len(rs.vips))
	for _, e := range rs.vips {
		a := e.addr.As4()
		key := make([]byte, 0, 12)
		key = append(key, a[:]...)
		key = append(key, e.proto.number(), 0, 0, 0)
		key = append(key, byte(e.port>>8), byte(e.port), 0, 0)
		elems = append(elems, nftables.SetElement{Key: key, VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: e.chain}})
	}
	vips := bt.set(&nftables.Set{Name: vipsMap, IsMap: true, Concatenation: true, KeyType: vipKeyType, DataType: nftables.TypeVerdict}, elems)
	elems = make([]nftables.SetElement, 0, len(rs.anyPorts))
	for _, e := range rs.anyPorts {
		a := e.addr.As4()
		key := make([]byte, 0, 8)
		key = append(key, a[:]...)
		key = append(key, e.proto.number(), 0, 0, 0)
		elems = append(elems, nftables.SetElement{Key: key, VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: e.chain}})
	}
	vipsAny := bt.set(&nftables.Set{Name: vipsAnyMap, IsMap: true, Concatenation: true, KeyType: vipAnyKeyType, DataType: nftables.TypeVerdict}, elems)
	elems = make([]nftables.SetElement, 0, len(rs.published))
	for _, e := range rs.published {
		key := []byte{e.proto.number(), 0, 0, 0, byte(e.port >> 8), byte(e.port), 0, 0}
		elems = append(elems, nftables.SetElement{Key: key, VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: e.chain}})
	}
	published := bt.set(&nftables.Set{Name: publishedMap, IsMap: true, Concatenation: true, KeyType: pubKeyType, DataType: nftables.TypeVerdict}, elems)
	backendMaps := make([]*nftables.Set, len(rs.targets))
	for i, t := range rs.targets {
		if len(t.addrs) == 0 {
			continue
		}
		elems = make([]nftables.SetElement, len(t.addrs))
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
		backendMaps[i] = bt.set(&nftables.Set{Name: t.backends, IsMap: true, KeyType: nftables.TypeInteger, KeyByteOrder: binaryutil.NativeEndian, DataType: dt}, elems)
	}

	// Rules.
	jump := &expr.Verdict{Kind: expr.VerdictJump, Chain: servicesChain}
	bt.rule(prerouting, jump)
	bt.rule(output, jump)
	bt.rule(services,
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg9},
		&expr.Payload{DestRegister: reg10, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: reg1, SetName: vips.Name, SetID: vips.ID, IsDestRegSet: true, DestRegister: 0},
	)
	// Only when the exact lookup found nothing: its goto leaves the chain.
	bt.rule(services,
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg9},
		&expr.Lookup{SourceRegister: reg1, SetName: vipsAny.Name, SetID: vipsAny.ID, IsDestRegSet: true, DestRegister: 0},
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
		&expr.Lookup{SourceRegister: reg1, SetName: published.Name, SetID: published.ID, IsDestRegSet: true, DestRegister: 0},
	)
	bt.rule(services, pub...)
	for i, t := range rs.targets {
		if len(t.addrs) == 0 {
			if t.anyPort {
				// A reset, not an ICMP error: the kernel rate-limits those
				// per client (1/s after a burst of 6), and the redirects it
				// sends a client whose connections hairpin spend the same
				// budget, so a refused connection could wait for a SYN
				// retransmit (tested).
				bt.rule(targets[i],
					&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_TCP}},
					&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
				)
			}
			bt.rule(targets[i], &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: icmpPortUnreach})
			continue
		}
		bt.rule(targets[i], append(loopback(expr.CmpOpEq, 12), setMark(rs.mark)...)...)
		m := backendMaps[i]
		nat := &expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegProtoMin: reg9}
		if t.anyPort {
			nat.RegProtoMin = 0 // the address alone: the port stays the client's
		}
		bt.rule(targets[i],
			&expr.Numgen{Register: reg1, Modulus: uint32(len(t.addrs)), Type: unix.NFT_NG_RANDOM},
			&expr.Lookup{SourceRegister: reg1, SetName: m.Name, SetID: m.ID, IsDestRegSet: true, DestRegister: reg1},
			nat,
		)
	}
	for i, m := range rs.meshes {
		bt.rule(meshes[i], append(setMark(rs.mark), &expr.Verdict{Kind: expr.VerdictGoto, Chain: m.target})...)
	}
	bt.rule(hairpin, append([]expr.Any{
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
	bt.rule(postrouting,
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: u32(rs.mark), Xor: u32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: u32(0)},
		&expr.Verdict{Kind: expr.VerdictReturn},
	)
	bt.rule(postrouting,
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: u32(^rs.mark), Xor: u32(0)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
		&expr.Masq{},
	)
	if localnet != nil {
		lo := make([]byte, unix.IFNAMSIZ)
		copy(lo, "lo")
		bt.rule(localnet, append([]expr.Any{
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
	return bt.flush()
}

// removeTable deletes the table, if it exists.
func (b *Balancer) removeTable() error {
	bt, err := b.newBatch(b.cfg.Table)
	if err != nil {
		return err
	}
	bt.c.AddTable(bt.table)
	bt.c.DelTable(bt.table)
	bt.msgs += 2
	return bt.flush()
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
