package dispatch

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// Workers gossip among themselves (kernel/gossip); the managers take no
// part but introduce them: each session starts with the gossip addresses of
// a few other nodes that have a session now, and the cluster's gossip key.
const (
	// GossipKeyLen is the gossip key's length: an AES-256 key.
	GossipKeyLen = 32
	// maxGossipPeers is how many addresses a worker is given. Joining one
	// live member is enough (memberlist's push/pull with it brings in the
	// whole membership); a few more cover members that just went away.
	maxGossipPeers = 5
)

// ensureGossipKey gives the cluster its gossip key when it has none: made
// once, by the first leader that finds it missing, and kept in Raft so that
// every leader hands out the same one.
func (d *Dispatcher) ensureGossipKey(ctx context.Context) error {
	var err error
	for range 5 {
		var have bool
		d.st.View(func(tx *state.ReadTx) {
			c := tx.Cluster()
			have = c == nil || len(c.GetGossipKey()) == GossipKeyLen
		})
		if have {
			return nil
		}
		key := make([]byte, GossipKeyLen)
		if _, err := crand.Read(key); err != nil {
			return fmt.Errorf("make the gossip key: %w", err)
		}
		err = d.raft.Update(ctx, func(tx *state.Tx) error {
			cur := tx.Cluster()
			if cur == nil || len(cur.GetGossipKey()) == GossipKeyLen {
				return nil
			}
			next := proto.Clone(cur).(*objectv1.Cluster)
			next.GossipKey = key
			return tx.UpdateCluster(next)
		})
		if err == nil {
			d.log.Info("gossip key created")
			return nil
		}
		if !errors.Is(err, sdk.ErrFailedPrecondition) {
			break
		}
	}
	return fmt.Errorf("store the gossip key: %w", err)
}

// gossipKey is the cluster's gossip key, or nil.
func gossipKey(tx *state.ReadTx) []byte {
	k := tx.Cluster().GetGossipKey()
	if len(k) != GossipKeyLen {
		return nil
	}
	return k
}

// validGossipAddr checks a node's reported gossip address: "ip:port".
func validGossipAddr(fe *sdk.FieldErrors, field, addr string) {
	if addr == "" {
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		fe.Add(field, "must be ip:port, got %q", addr)
		return
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() || ip.IsMulticast() {
		fe.Add(field, "host must be an IP address other nodes can reach, got %q", host)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != port {
		fe.Add(field, "port must be between 1 and 65535, got %q", port)
	}
}

// gossipPool is the gossip addresses of the nodes that have a session, for
// picking a few at random in O(1) each (a slice, with each node's index).
// The dispatcher's mu guards it.
type gossipPool struct {
	addrs []gossipMember
	index map[string]int // node ID: position in addrs
}

type gossipMember struct {
	nodeID, addr string
}

// set records nodeID's address; "" removes it.
func (p *gossipPool) set(nodeID, addr string) {
	if p.index == nil {
		p.index = map[string]int{}
	}
	i, ok := p.index[nodeID]
	switch {
	case ok && addr != "":
		p.addrs[i].addr = addr
	case ok:
		last := len(p.addrs) - 1
		p.addrs[i] = p.addrs[last]
		p.index[p.addrs[i].nodeID] = i
		p.addrs = p.addrs[:last]
		delete(p.index, nodeID)
	case addr != "":
		p.index[nodeID] = len(p.addrs)
		p.addrs = append(p.addrs, gossipMember{nodeID, addr})
	}
}

// pick returns up to n addresses of nodes other than self, distinct, at
// random: a partial Fisher-Yates shuffle over the pool's indexes, which
// leaves the pool itself as it is.
func (p *gossipPool) pick(self string, n int, randN func(int) int) []string {
	size := len(p.addrs)
	if _, in := p.index[self]; in {
		size--
	}
	n = min(n, size)
	if n <= 0 {
		return nil
	}
	out := make([]string, 0, n)
	swapped := map[int]int{} // the shuffle's moved indexes
	at := func(i int) int {
		if j, ok := swapped[i]; ok {
			return j
		}
		return i
	}
	for k := 0; len(out) < n && k < len(p.addrs); k++ {
		j := k + randN(len(p.addrs)-k)
		pj, pk := at(j), at(k)
		swapped[j], swapped[k] = pk, pj
		if m := p.addrs[pj]; m.nodeID != self {
			out = append(out, m.addr)
		}
	}
	return out
}

// randN is the pool's source of randomness.
func randN(n int) int { return rand.IntN(n) }
