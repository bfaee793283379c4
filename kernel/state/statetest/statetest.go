// Package statetest is a kit for tests of the parts that write through
// Raft (the leader's stages, the dispatcher): Raft, a one-manager Raft over
// a real state.Store.
package statetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/shoalhq/shoal/kernel/state"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// Raft commits each write at once, as a one-manager Raft whose every
// proposal commits: Update prepares the transaction on Store and applies it
// at the index after the store's. Writes are serialized, like entries in a
// log. It has the Update method of the stages' Raft interfaces.
type Raft struct {
	Store *state.Store

	// mu serializes writes (the log has one order) and guards writes.
	mu sync.Mutex
	// writes counts the Updates that committed something.
	writes int
}

// NewRaft returns a Raft that commits into st.
func NewRaft(st *state.Store) *Raft { return &Raft{Store: st} }

// Update prepares fn's changes and commits them, unless fn fails or
// changes nothing. It does not look at ctx: a commit that starts, ends.
func (r *Raft) Update(_ context.Context, fn func(tx *state.Tx) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	txn, err := r.Store.Prepare(time.Now(), fn)
	if err != nil || txn == nil {
		return err
	}
	var index uint64
	r.Store.View(func(tx *state.ReadTx) { index = tx.Index() + 1 })
	r.writes++
	return r.Store.Apply(index, &raftv1.Command{Transactions: []*raftv1.Transaction{txn}})[0]
}

// Write is Update, failing the test when it fails: the test's own writes.
func (r *Raft) Write(t testing.TB, fn func(tx *state.Tx) error) {
	t.Helper()
	if err := r.Update(t.Context(), fn); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// Writes returns how many Updates committed something so far.
func (r *Raft) Writes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writes
}
