package raftstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

func svc(id, name string) *objectv1.Service {
	return &objectv1.Service{Id: id, Spec: &objectv1.ServiceSpec{Annotations: &objectv1.Annotations{Name: name}}}
}

func TestReplicatesAndRefusesFollowerWrites(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := context.Background()
	// A leader elected moments ago may still lose leadership on a loaded
	// machine (the test cluster's timeouts are short): its write is then
	// refused as unavailable, and the next leader takes it.
	var leader *Node
	for attempt := 0; ; attempt++ {
		leader = c.waitLeader()
		err := leader.Update(ctx, func(tx *state.Tx) error { return tx.CreateService(svc("s1", "web")) })
		if err == nil || (attempt > 0 && errors.Is(err, sdk.ErrAlreadyExists)) {
			break // (the lost leader's write may have committed after all)
		}
		if !errors.Is(err, sdk.ErrUnavailable) || attempt == 10 {
			t.Fatal(err)
		}
	}
	c.waitApplied(leader.Stats().AppliedIndex)
	for _, tn := range c.nodes {
		var got *objectv1.Service
		tn.n.Store().View(func(tx *state.ReadTx) { got = tx.ServiceByName("web") })
		if got == nil || got.Id != "s1" {
			t.Errorf("%s: ServiceByName(web) = %v, want s1", tn.cfg.NodeID, got)
		}
		if tn.n != leader {
			err := tn.n.Update(ctx, func(tx *state.Tx) error { return tx.CreateService(svc("s2", "db")) })
			if !errors.Is(err, ErrNotLeader) {
				t.Errorf("%s: follower Update = %v, want ErrNotLeader", tn.cfg.NodeID, err)
			}
		}
	}
}

func TestPerWriterResults(t *testing.T) {
	c := newTestCluster(t, 1)
	leader := c.waitLeader()
	ctx := context.Background()
	if err := leader.Update(ctx, func(tx *state.Tx) error { return tx.CreateService(svc("s1", "web")) }); err != nil {
		t.Fatal(err)
	}
	// Many writers at once: those creating a fresh service succeed, those
	// reusing s1's ID fail alone, whatever entry they share.
	var wg sync.WaitGroup
	errs := make([]error, 200)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("x%d", i)
			if i%10 == 0 {
				id = "s1"
			}
			txn := newCreateTxn(t, leader, svc(id, fmt.Sprintf("name-%d", i)))
			errs[i] = leader.Propose(ctx, txn)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if i%10 == 0 {
			if !errors.Is(err, sdk.ErrAlreadyExists) {
				t.Errorf("writer %d (duplicate ID) = %v, want ErrAlreadyExists", i, err)
			}
		} else if err != nil {
			t.Errorf("writer %d = %v, want nil", i, err)
		}
	}
	st := leader.Stats()
	if st.Transactions != 201 || st.Entries >= st.Transactions {
		t.Errorf("Stats() = %+v, want 201 transactions packed into fewer entries", st)
	}
}

// newCreateTxn prepares a create without the local existence check, so the
// apply-time check is what refuses duplicates.
func newCreateTxn(t *testing.T, n *Node, s *objectv1.Service) *raftv1.Transaction {
	t.Helper()
	txn, err := state.New().Prepare(time.Now(), func(tx *state.Tx) error { return tx.CreateService(s) })
	if err != nil {
		t.Fatal(err)
	}
	return txn
}

func TestRestartFromSnapshotAndLog(t *testing.T) {
	c := newTestCluster(t, 1)
	leader := c.waitLeader()
	ctx := context.Background()
	write := func(from, to int) {
		for i := from; i < to; i++ {
			err := leader.Update(ctx, func(tx *state.Tx) error {
				return tx.CreateService(svc(fmt.Sprintf("s%d", i), fmt.Sprintf("svc-%d", i)))
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	write(0, 100)
	if err := leader.Snapshot(); err != nil {
		t.Fatal(err)
	}
	write(100, 150) // these live only in the log
	before := leader.Store().Snapshot()

	tn := c.nodes[0]
	if err := c.stopNode(tn); err != nil {
		t.Fatal(err)
	}
	cfg := tn.cfg
	cfg.Bootstrap = true // must be ignored: the node has state
	c.nodes[0] = c.start(cfg)
	leader = c.waitLeader()
	if err := leader.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	after := leader.Store().Snapshot()
	if len(after.GetServices()) != 150 {
		t.Fatalf("after restart: %d services, want 150", len(after.GetServices()))
	}
	before.Index, after.Index = 0, 0 // the restart appends a configuration/no-op entry
	if !proto.Equal(before, after) {
		t.Errorf("state after restart differs from state before")
	}
}
