package manager

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"

	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/kernel/raftstore"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
)

// leaderDialer keeps one connection per manager address and finds the
// leader's through the replicated Node records (ManagerStatus.api_addr).
type leaderDialer struct {
	raft *raftstore.Node
	st   *state.Store
	id   *ca.Identity

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newLeaderDialer(r *raftstore.Node, st *state.Store, id *ca.Identity) *leaderDialer {
	return &leaderDialer{raft: r, st: st, id: id, conns: map[string]*grpc.ClientConn{}}
}

// leaderWait bounds how long a forwarded call waits for an election. A LAN
// election takes about a second; past this the cluster has likely lost
// quorum and the caller is better told so.
const leaderWait = 5 * time.Second

// LeaderConn returns a connection to the leader's API.
func (d *leaderDialer) LeaderConn(ctx context.Context) (*grpc.ClientConn, error) {
	deadline := time.Now().Add(leaderWait)
	for {
		id, _ := d.raft.Leader()
		if id != "" && !d.raft.IsLeader() {
			var addr string
			d.st.View(func(tx *state.ReadTx) {
				if n := tx.Node(id); n != nil {
					addr = n.GetManagerStatus().GetApiAddr()
				}
			})
			if addr != "" {
				return d.conn(addr)
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no reachable raft leader after %s: %w", leaderWait, sdk.ErrUnavailable)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (d *leaderDialer) conn(addr string) (*grpc.ClientConn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.conns[addr]; ok {
		// A manager that was down is likely back (it is the leader now): do
		// not wait out the reconnect backoff of its old connection.
		if st := c.GetState(); st == connectivity.TransientFailure || st == connectivity.Idle {
			c.ResetConnectBackoff()
			c.Connect()
		}
		return c, nil
	}
	c, err := dialManager(addr, d.id)
	if err != nil {
		return nil, err
	}
	d.conns[addr] = c
	return c, nil
}

func (d *leaderDialer) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.Close()
	}
	d.conns = map[string]*grpc.ClientConn{}
}
