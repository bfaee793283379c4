package raftstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
)

// A leader's local state answers a read linearizably once a barrier entry
// appended after the read arrived has committed and applied locally. The
// commit proves that a quorum took the entry from this leader in its term
// after the read arrived, so no later leader had been elected by then; the
// apply proves that the state holds every entry before it, which includes
// every write acknowledged before the read (by this leader, or by an earlier
// one, whose entries come first in this leader's log). It also makes a new
// leader wait until it has applied its predecessors' entries.
//
// hashicorp/raft's VerifyLeader is not enough, and was what this used first:
// it counts any heartbeat or append response that arrives after the call
// as a vote, including responses to requests sent before it. A leader
// paused (SIGSTOP, a long GC, an overloaded VM) finds its followers' old
// answers waiting in its sockets when it resumes, and confirms itself with
// them: TestLinearizable caught a read answered that way with a value
// replaced two seconds earlier. A barrier cannot be fooled so: old answers
// carry no match for an entry appended after the pause.
//
// No clock is trusted either: a lease would let a resumed leader answer
// from its stale state. The cost is one entry (a few bytes, one fsync,
// one round trip) per round; reads that arrive while a round runs share
// the next one, so a burst of reads costs two rounds, not one each.

// readGate holds the barrier rounds of the reads waiting on this leader.
type readGate struct {
	mu sync.Mutex
	// running is set while barrierLoop runs; next is the round that the
	// reads which arrived since the current round started wait for.
	running bool
	next    *readRound
}

type readRound struct {
	done chan struct{}
	err  error // set before done closes
}

// barrierTimeout bounds a barrier round: one entry, committed in a round
// trip unless the leader is about to lose its quorum.
const barrierTimeout = 10 * time.Second

// ReadBarrier returns once this node's state reflects every write that was
// acknowledged (by any leader) before ReadBarrier was called, or fails with
// ErrNotLeader (of kind sdk.ErrUnavailable) when this node does not lead.
// Reads made after it returns are linearizable.
func (n *Node) ReadBarrier(ctx context.Context) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	g := &n.reads
	g.mu.Lock()
	if g.next == nil {
		g.next = &readRound{done: make(chan struct{})}
	}
	r := g.next
	if !g.running {
		g.running = true
		go n.barrierLoop()
	}
	g.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// barrierLoop runs barrier rounds, one at a time, while reads wait for one.
func (n *Node) barrierLoop() {
	g := &n.reads
	for {
		g.mu.Lock()
		r := g.next
		g.next = nil
		if r == nil {
			g.running = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		r.err = raftErr(n.raft.Barrier(barrierTimeout).Error())
		close(r.done)
	}
}

// raftErr maps hashicorp/raft's errors on leadership to ErrNotLeader.
func raftErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrRaftShutdown):
		return ErrNotLeader
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("raft: %w: %w", err, sdk.ErrUnavailable)
	}
	return err
}

// Write is the result of UpdateRequest.
type Write struct {
	// Index is the Raft index the write applied at (0 when it changed
	// nothing).
	Index uint64
	// ObjectID is the ID of the first object the write changed.
	ObjectID string
	// Replayed is set when the request had already applied: nothing was
	// written this time, and Index and ObjectID are the first attempt's.
	Replayed bool
}

// UpdateRequest is Update for a client's request: its checks read
// linearizably (ReadBarrier first), and requestID, when not empty, makes it
// take effect at most once. A request that already applied (a retry)
// changes nothing and returns the first attempt's result with Replayed set.
func (n *Node) UpdateRequest(ctx context.Context, requestID string, fn func(tx *state.Tx) error) (Write, error) {
	if err := n.ReadBarrier(ctx); err != nil {
		return Write{}, err
	}
	replay := func() (Write, bool) {
		var rec state.Request
		var ok bool
		n.st.View(func(tx *state.ReadTx) { rec, ok = tx.Request(requestID) })
		return Write{Index: rec.Index, ObjectID: rec.ObjectID, Replayed: true}, ok
	}
	if requestID != "" {
		if w, ok := replay(); ok {
			return w, nil
		}
	}
	txn, err := n.st.Prepare(time.Now(), fn)
	if err != nil {
		return Write{}, err
	}
	if txn == nil || len(txn.Actions) == 0 {
		return Write{}, nil
	}
	txn.RequestId = requestID
	idx, err := n.prop.proposeIndex(ctx, txn)
	if errors.Is(err, state.ErrDuplicateRequest) {
		// A concurrent attempt of the same request applied first.
		if w, ok := replay(); ok {
			return w, nil
		}
	}
	if err != nil {
		return Write{}, err
	}
	return Write{Index: idx, ObjectID: state.FirstObjectID(txn)}, nil
}
