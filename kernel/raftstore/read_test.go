package raftstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
)

func TestUpdateRequestTakesEffectOnce(t *testing.T) {
	c := newTestCluster(t, 1)
	leader := c.waitLeader()
	ctx := context.Background()
	w, err := leader.UpdateRequest(ctx, "req-1", func(tx *state.Tx) error { return tx.CreateService(svc("s1", "web")) })
	if err != nil {
		t.Fatal(err)
	}
	if w.Replayed || w.ObjectID != "s1" || w.Index == 0 {
		t.Fatalf("first UpdateRequest = %+v, want s1 applied, not replayed", w)
	}
	// The same request again (a retry) does not run fn's writes, whatever
	// they are, and answers with the first attempt's result.
	again, err := leader.UpdateRequest(ctx, "req-1", func(tx *state.Tx) error { return tx.CreateService(svc("s2", "db")) })
	if err != nil {
		t.Fatal(err)
	}
	if !again.Replayed || again.ObjectID != "s1" || again.Index != w.Index {
		t.Fatalf("retried UpdateRequest = %+v, want the first attempt's %+v, replayed", again, w)
	}
	leader.Store().View(func(tx *state.ReadTx) {
		if tx.Service("s2") != nil {
			t.Error("a retried request applied its writes a second time")
		}
	})
	// Another request ID is another write.
	other, err := leader.UpdateRequest(ctx, "req-2", func(tx *state.Tx) error { return tx.CreateService(svc("s2", "db")) })
	if err != nil || other.Replayed || other.ObjectID != "s2" {
		t.Fatalf("UpdateRequest(req-2) = %+v, %v; want s2 applied", other, err)
	}
}

func TestReadBarrierNeedsAQuorum(t *testing.T) {
	c := newTestCluster(t, 3)
	var leader *Node
	// A leader elected moments ago may lose its leadership on a loaded
	// machine; the barrier then fails as unavailable and the next one is
	// asked.
	deadline := time.Now().Add(30 * time.Second)
	for {
		leader = c.waitLeader()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := leader.ReadBarrier(ctx)
		cancel()
		if err == nil {
			break
		}
		if !errors.Is(err, sdk.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("leader ReadBarrier = %v", err)
		}
	}
	for _, tn := range c.nodes {
		if tn.n == leader {
			continue
		}
		if err := tn.n.ReadBarrier(context.Background()); !errors.Is(err, ErrNotLeader) {
			t.Errorf("%s: follower ReadBarrier = %v, want ErrNotLeader", tn.cfg.NodeID, err)
		}
	}
	// Without its followers the leader cannot confirm it still leads: a
	// read must not be answered from its state.
	for _, tn := range c.nodes {
		if tn.n != leader {
			c.stopNode(tn)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := leader.ReadBarrier(ctx); err == nil {
		t.Fatal("ReadBarrier on a leader cut off from its quorum = nil, want an error")
	}
}
