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

// A leader's local state answers a read linearizably once two things hold:
//
//  1. The leader has applied every entry committed before its term began.
//     A leader's log holds them all, but its state machine may lag: a
//     barrier entry appended in its own term and applied locally proves it
//     caught up (Raft commits earlier terms' entries only through one of
//     the current term). Done once per term, then remembered.
//  2. It is still the leader after the read arrived: a leader that was
//     paused or cut off may have been replaced, and the new one may have
//     acknowledged writes this one never saw. VerifyLeader confirms it with
//     a round of heartbeats to a quorum (the read-index check of the Raft
//     paper, §6.4, without waiting for a commit index: every write this
//     leader acknowledged was applied here before it was acknowledged).
//
// Both rely on no clock: a paused process resumes believing it leads, and a
// lease would let it answer from its stale state; the heartbeat round
// cannot be fooled that way. It costs one round trip to the other managers
// per read, shared by the reads that arrive while the previous round runs.

// readGate holds the leader's read state: the term its barrier applied in,
// and the heartbeat rounds.
type readGate struct {
	mu sync.Mutex
	// readyTerm is the term whose barrier entry has applied locally.
	readyTerm uint64
	// barrier is the barrier in flight, nil when none.
	barrier *termBarrier
	// verifying is set while verifyLoop runs; next is the round that the
	// reads which arrived since the current round started wait for.
	verifying bool
	next      *verifyRound
}

type termBarrier struct {
	term uint64
	done chan struct{}
	err  error // set before done closes
}

type verifyRound struct {
	done chan struct{}
	err  error // set before done closes
}

// barrierTimeout bounds a term barrier: it is one entry, committed in a
// round trip unless the leader is about to lose its quorum.
const barrierTimeout = 10 * time.Second

// ReadBarrier returns once this node's state reflects every write that was
// acknowledged (by any leader) before ReadBarrier was called, or fails with
// ErrNotLeader (of kind sdk.ErrUnavailable) when this node does not lead.
// Reads made after it returns are linearizable.
func (n *Node) ReadBarrier(ctx context.Context) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	term := n.raft.CurrentTerm()
	if err := n.termBarrier(ctx, term); err != nil {
		return err
	}
	if err := n.verifyLeader(ctx); err != nil {
		return err
	}
	if !n.IsLeader() || n.raft.CurrentTerm() != term {
		return ErrNotLeader
	}
	return nil
}

// termBarrier waits until a barrier of term has applied locally, starting
// one if none is in flight.
func (n *Node) termBarrier(ctx context.Context, term uint64) error {
	g := &n.reads
	for {
		g.mu.Lock()
		if g.readyTerm == term {
			g.mu.Unlock()
			return nil
		}
		b := g.barrier
		if b == nil || b.term != term {
			b = &termBarrier{term: term, done: make(chan struct{})}
			g.barrier = b
			go n.runBarrier(b)
		}
		g.mu.Unlock()
		select {
		case <-b.done:
			if b.err != nil {
				return b.err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (n *Node) runBarrier(b *termBarrier) {
	err := raftErr(n.raft.Barrier(barrierTimeout).Error())
	g := &n.reads
	g.mu.Lock()
	defer g.mu.Unlock()
	if err == nil && b.term > g.readyTerm {
		g.readyTerm = b.term
	}
	if g.barrier == b {
		g.barrier = nil
	}
	b.err = err
	close(b.done)
}

// verifyLeader waits for a round of heartbeats, started after the call,
// that confirms this node still leads.
func (n *Node) verifyLeader(ctx context.Context) error {
	g := &n.reads
	g.mu.Lock()
	if g.next == nil {
		g.next = &verifyRound{done: make(chan struct{})}
	}
	r := g.next
	if !g.verifying {
		g.verifying = true
		go n.verifyLoop()
	}
	g.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// verifyLoop runs heartbeat rounds while reads wait for one.
func (n *Node) verifyLoop() {
	g := &n.reads
	for {
		g.mu.Lock()
		r := g.next
		g.next = nil
		if r == nil {
			g.verifying = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		r.err = raftErr(n.raft.VerifyLeader().Error())
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
