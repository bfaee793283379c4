package lb

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// elemsPerMsg bounds the elements of one NEWSETELEM message: the element
// list is one netlink attribute, whose length is 16 bits.
const elemsPerMsg = 512

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
	ch := bt.chains(rs)
	m := bt.maps(rs)
	bt.serviceRules(rs, ch, m)
	bt.targetRules(rs, ch, m)
	bt.masqueradeRules(rs, ch)
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
