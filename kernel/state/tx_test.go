package state

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

var now = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// clone returns a writable copy of a stored object.
func clone[T proto.Message](m T) T { return proto.Clone(m).(T) }

func TestPrepareSeesOwnWrites(t *testing.T) {
	s := seeded(t)
	_, err := s.Prepare(now, func(tx *Tx) error {
		check := func(what string, got, want []string) {
			t.Helper()
			if !slices.Equal(got, want) {
				t.Errorf("%s = %v, want %v", what, got, want)
			}
		}
		if err := tx.CreateNode(testNode("n3", worker, drain)); err != nil {
			return err
		}
		if tx.Node("n3") == nil {
			t.Errorf("Node(n3) = nil after CreateNode")
		}
		check("Nodes()", ids(tx.Nodes()), []string{"n1", "n2", "n3"})
		check("NodesByAvailability(drain)", ids(tx.NodesByAvailability(drain)), []string{"n3"})
		check("NodesByRole(worker)", ids(tx.NodesByRole(worker)), []string{"n2", "n3"})

		// Move t1 from n1 to n3 and fail it.
		t1 := clone(tx.Task("t1"))
		t1.NodeId, t1.Status.State = "n3", failed
		if err := tx.UpdateTask(t1); err != nil {
			return err
		}
		check("TasksByNode(n1)", ids(tx.TasksByNode("n1")), []string{})
		check("TasksByNode(n3)", ids(tx.TasksByNode("n3")), []string{"t1"})
		check("TasksByState(running)", ids(tx.TasksByState(running)), []string{})
		check("TasksByState(failed)", ids(tx.TasksByState(failed)), []string{"t1"})

		if err := tx.CreateTask(testTask("t4", "s1", "", running, pending)); err != nil {
			return err
		}
		if err := tx.DeleteTask("t2"); err != nil {
			return err
		}
		check("TasksByService(s1)", ids(tx.TasksByService("s1")), []string{"t1", "t4"})
		check("TasksByNode(\"\")", ids(tx.TasksByNode("")), []string{"t3", "t4"})
		check("TasksByDesiredState(running)", ids(tx.TasksByDesiredState(running)), []string{"t1", "t3", "t4"})
		check("Tasks()", ids(tx.Tasks()), []string{"t1", "t3", "t4"})
		if tx.Task("t2") != nil {
			t.Errorf("Task(t2) != nil after DeleteTask")
		}
		if d, o := tx.CountTasks("s1", running, pending); d != 2 || o != 1 {
			t.Errorf("CountTasks(s1, running, pending) = %d, %d, want 2, 1", d, o)
		}
		if got, err := tx.LookupTask("t4"); err != nil || got.GetId() != "t4" {
			t.Errorf("LookupTask(t4) = %v, %v, want t4", got, err)
		}
		if _, err := tx.LookupTask("t2"); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("LookupTask(t2) error = %v, want not found", err)
		}

		// Rename web to www, then give web to a new service.
		s1 := clone(tx.Service("s1"))
		s1.Spec.Annotations.Name = "www"
		if err := tx.UpdateService(s1); err != nil {
			return err
		}
		if err := tx.CreateService(testService("s3", "web")); err != nil {
			return err
		}
		if got := tx.ServiceByName("web").GetId(); got != "s3" {
			t.Errorf("ServiceByName(web) = %q, want s3", got)
		}
		if got := tx.ServiceByName("www").GetId(); got != "s1" {
			t.Errorf("ServiceByName(www) = %q, want s1", got)
		}
		check("Services()", ids(tx.Services()), []string{"s2", "s3", "s1"}) // db, web, www
		if got, err := tx.LookupService("www"); err != nil || got.GetId() != "s1" {
			t.Errorf("LookupService(www) = %v, %v, want s1", got, err)
		}

		c := clone(tx.Cluster())
		c.Spec.Annotations.Name = "renamed"
		if err := tx.UpdateCluster(c); err != nil {
			return err
		}
		if got := tx.Cluster().GetSpec().GetAnnotations().GetName(); got != "renamed" {
			t.Errorf("Cluster().Spec.Annotations.Name = %q, want renamed", got)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Prepare = %v", err)
	}
	// The store itself is unchanged.
	s.View(func(tx *ReadTx) {
		if tx.Node("n3") != nil || tx.Task("t2") == nil || tx.ServiceByName("web").GetId() != "s1" {
			t.Errorf("Prepare changed the store")
		}
	})
}

type wantAction struct {
	kind    raftv1.ActionKind
	id      string
	version uint64
}

func actionsOf(txn *raftv1.Transaction) []wantAction {
	var out []wantAction
	for _, a := range txn.GetActions() {
		w := wantAction{kind: a.GetKind()}
		switch {
		case a.GetCluster() != nil:
			w.id, w.version = a.GetCluster().GetId(), a.GetCluster().GetMeta().GetVersion()
		case a.GetNode() != nil:
			w.id, w.version = a.GetNode().GetId(), a.GetNode().GetMeta().GetVersion()
		case a.GetService() != nil:
			w.id, w.version = a.GetService().GetId(), a.GetService().GetMeta().GetVersion()
		case a.GetTask() != nil:
			w.id, w.version = a.GetTask().GetId(), a.GetTask().GetMeta().GetVersion()
		}
		out = append(out, w)
	}
	return out
}

func TestPrepareFoldsWrites(t *testing.T) {
	moved := func(tx *Tx, id, node string) error {
		tk := clone(tx.Task(id))
		tk.NodeId = node
		return tx.UpdateTask(tk)
	}
	tests := []struct {
		name string
		fn   func(tx *Tx) error
		want []wantAction // nil: no transaction
	}{
		{"nothing", func(tx *Tx) error { return nil }, nil},
		{"only reads", func(tx *Tx) error { tx.Tasks(); return nil }, nil},
		{"create", func(tx *Tx) error { return tx.CreateTask(testTask("t9", "s1", "", running, pending)) },
			[]wantAction{{opCreate, "t9", 0}}},
		{"create then update", func(tx *Tx) error {
			if err := tx.CreateTask(testTask("t9", "s1", "", running, pending)); err != nil {
				return err
			}
			return moved(tx, "t9", "n1")
		}, []wantAction{{opCreate, "t9", 0}}},
		{"create then delete", func(tx *Tx) error {
			if err := tx.CreateTask(testTask("t9", "s1", "", running, pending)); err != nil {
				return err
			}
			return tx.DeleteTask("t9")
		}, nil},
		{"update twice keeps the version read", func(tx *Tx) error {
			if err := moved(tx, "t1", "n2"); err != nil {
				return err
			}
			return moved(tx, "t1", "n1")
		}, []wantAction{{opUpdate, "t1", 1}}},
		{"delete", func(tx *Tx) error { return tx.DeleteNode("n2") }, []wantAction{{opDelete, "n2", 0}}},
		{"update then delete", func(tx *Tx) error {
			if err := moved(tx, "t1", "n2"); err != nil {
				return err
			}
			return tx.DeleteTask("t1")
		}, []wantAction{{opDelete, "t1", 0}}},
		{"delete then create", func(tx *Tx) error {
			if err := tx.DeleteService("s1"); err != nil {
				return err
			}
			return tx.CreateService(testService("s1", "web2"))
		}, []wantAction{{opDelete, "s1", 0}, {opCreate, "s1", 0}}},
		{"order of first write", func(tx *Tx) error {
			for _, err := range []error{
				tx.CreateNode(testNode("n9", worker, active)),
				moved(tx, "t2", "n9"),
				tx.DeleteTask("t3"),
				moved(tx, "t2", ""),
			} {
				if err != nil {
					return err
				}
			}
			c := clone(tx.Cluster())
			c.Spec.Annotations.Name = "x"
			return tx.UpdateCluster(c)
		}, []wantAction{{opCreate, "n9", 0}, {opUpdate, "t2", 1}, {opDelete, "t3", 0}, {opUpdate, "c1", 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := seeded(t)
			got, err := s.Prepare(now, tc.fn)
			if err != nil {
				t.Fatalf("Prepare = %v", err)
			}
			if tc.want == nil {
				if got != nil {
					t.Fatalf("Prepare = %v, want no transaction", got)
				}
				return
			}
			if acts := actionsOf(got); !slices.Equal(acts, tc.want) {
				t.Fatalf("Prepare actions = %v, want %v", acts, tc.want)
			}
			// What Prepare made applies.
			mustApply(t, s, 2, got)
			checkIndexes(t, s)
		})
	}
}

func TestPrepareEarlyErrors(t *testing.T) {
	tests := []struct {
		name string
		fn   func(tx *Tx) error
		want error
	}{
		{"create existing", func(tx *Tx) error { return tx.CreateNode(testNode("n1", worker, active)) }, sdk.ErrAlreadyExists},
		{"create after own create", func(tx *Tx) error {
			_ = tx.CreateTask(testTask("t9", "", "", running, pending))
			return tx.CreateTask(testTask("t9", "", "", running, pending))
		}, sdk.ErrAlreadyExists},
		{"update missing", func(tx *Tx) error { return tx.UpdateTask(testTask("t9", "", "", running, pending)) }, sdk.ErrNotFound},
		{"update after own delete", func(tx *Tx) error {
			t1 := clone(tx.Task("t1"))
			_ = tx.DeleteTask("t1")
			return tx.UpdateTask(t1)
		}, sdk.ErrNotFound},
		{"delete missing", func(tx *Tx) error { return tx.DeleteService("s9") }, sdk.ErrNotFound},
		{"delete twice", func(tx *Tx) error {
			_ = tx.DeleteService("s1")
			return tx.DeleteService("s1")
		}, sdk.ErrNotFound},
		{"update from a stale read", func(tx *Tx) error { return tx.UpdateNode(withVersion(testNode("n1", worker, drain), 0)) }, ErrVersionConflict},
		{"update of the stored object itself", func(tx *Tx) error {
			// The test does not modify it: passing it is the mistake.
			return tx.UpdateTask(tx.Task("t1"))
		}, sdk.ErrInvalidArgument},
		{"service name taken", func(tx *Tx) error { return tx.CreateService(testService("s9", "web")) }, sdk.ErrAlreadyExists},
		{"service renamed to a taken name", func(tx *Tx) error {
			s2 := clone(tx.Service("s2"))
			s2.Spec.Annotations.Name = "web"
			return tx.UpdateService(s2)
		}, sdk.ErrAlreadyExists},
		{"service name taken by an own create", func(tx *Tx) error {
			_ = tx.CreateService(testService("s8", "api"))
			return tx.CreateService(testService("s9", "api"))
		}, sdk.ErrAlreadyExists},
		{"service without name", func(tx *Tx) error { return tx.CreateService(testService("s9", "")) }, sdk.ErrInvalidArgument},
		{"empty id", func(tx *Tx) error { return tx.CreateTask(testTask("", "", "", running, pending)) }, sdk.ErrInvalidArgument},
		{"empty delete id", func(tx *Tx) error { return tx.DeleteTask("") }, sdk.ErrInvalidArgument},
		{"nil object", func(tx *Tx) error { return tx.CreateNode(nil) }, sdk.ErrInvalidArgument},
		{"nil cluster", func(tx *Tx) error { return tx.UpdateCluster(nil) }, sdk.ErrInvalidArgument},
		{"second cluster with the same id", func(tx *Tx) error { return tx.CreateCluster(testCluster("c1")) }, sdk.ErrAlreadyExists},
		{"second cluster with another id", func(tx *Tx) error { return tx.CreateCluster(testCluster("c2")) }, sdk.ErrInvalidArgument},
		{"update of another cluster", func(tx *Tx) error { return tx.UpdateCluster(withVersion(testCluster("c2"), 1)) }, sdk.ErrNotFound},
		{"cluster update from a stale read", func(tx *Tx) error { return tx.UpdateCluster(withVersion(testCluster("c1"), 0)) }, ErrVersionConflict},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := seeded(t)
			txn, err := s.Prepare(now, tc.fn)
			if !errors.Is(err, tc.want) {
				t.Errorf("Prepare = %v, want an error of kind %v", err, tc.want)
			}
			if txn != nil {
				t.Errorf("Prepare = %v, want no transaction with an error", txn)
			}
		})
	}
}

func TestPrepareReturnsFnError(t *testing.T) {
	s := seeded(t)
	boom := errors.New("boom")
	txn, err := s.Prepare(now, func(tx *Tx) error {
		if err := tx.CreateNode(testNode("n9", worker, active)); err != nil {
			return err
		}
		return boom
	})
	if err != boom || txn != nil {
		t.Errorf("Prepare = %v, %v, want nil, boom", txn, err)
	}
}

func TestTxUnusableAfterPrepare(t *testing.T) {
	s := seeded(t)
	var kept *Tx
	if _, err := s.Prepare(now, func(tx *Tx) error { kept = tx; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := kept.CreateNode(testNode("n9", worker, active)); !errors.Is(err, errTxDone) {
		t.Errorf("CreateNode after Prepare returned = %v, want %v", err, errTxDone)
	}
}

func TestPrepareStampsMeta(t *testing.T) {
	s := New()
	createdAt := timestamppb.New(now.Add(-time.Hour))
	t1 := testTask("t1", "s1", "n1", running, running)
	t1.Meta = &objectv1.Meta{CreatedAt: createdAt, UpdatedAt: createdAt}
	mustApply(t, s, 2, creates(t1))

	txn, err := s.Prepare(now, func(tx *Tx) error {
		tk := testTask("t9", "s1", "", running, pending)
		tk.Meta = &objectv1.Meta{Version: 42} // ignored on create
		if err := tx.CreateTask(tk); err != nil {
			return err
		}
		up := clone(tx.Task("t1"))
		up.Meta.CreatedAt = timestamppb.New(now) // ignored on update
		return tx.UpdateTask(up)
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := timestamppb.New(now)
	want := []*objectv1.Meta{
		{Version: 0, CreatedAt: ts, UpdatedAt: ts},
		{Version: 2, CreatedAt: createdAt, UpdatedAt: ts},
	}
	for i, a := range txn.GetActions() {
		if got := a.GetTask().GetMeta(); !proto.Equal(got, want[i]) {
			t.Errorf("action %d meta = %v, want %v", i, got, want[i])
		}
	}
}

func TestPrepareConflictAtApply(t *testing.T) {
	s := seeded(t)
	drainNode := func(tx *Tx) error {
		n := clone(tx.Node("n2"))
		n.Spec.Availability = drain
		return tx.UpdateNode(n)
	}
	// Two writers prepare against the same state; the second to apply loses.
	first, err1 := s.Prepare(now, drainNode)
	second, err2 := s.Prepare(now, drainNode)
	if err1 != nil || err2 != nil {
		t.Fatalf("Prepare = %v, %v", err1, err2)
	}
	errs := s.Apply(2, command(first, second))
	if errs[0] != nil || !errors.Is(errs[1], ErrVersionConflict) {
		t.Errorf("Apply(first, second) = %v, want [nil, version conflict]", errs)
	}
	// Retrying against the new state succeeds.
	retry, err := s.Prepare(now, drainNode)
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, 3, retry)
}

// TestPrepareAppliesAsSeen makes many random writes in one Tx, over few IDs
// so that objects are created, updated, deleted and created again, and
// checks that applying the Transaction gives the state the Tx saw.
func TestPrepareAppliesAsSeen(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		s := seeded(t)
		var seen *raftv1.Snapshot
		txn, err := s.Prepare(now, func(tx *Tx) error {
			for range 60 {
				id := fmt.Sprint("t", rng.IntN(6))
				cur := tx.Task(id)
				var err error
				switch {
				case cur == nil:
					err = tx.CreateTask(testTask(id, fmt.Sprint("s", rng.IntN(3)), "", running, pending))
				case rng.IntN(3) == 0:
					err = tx.DeleteTask(id)
				default:
					up := clone(cur)
					up.NodeId = fmt.Sprint("n", rng.IntN(3))
					up.Status.State = objectv1.TaskState(rng.IntN(12))
					err = tx.UpdateTask(up)
				}
				if err != nil {
					return err
				}
				if rng.IntN(4) == 0 {
					n := clone(tx.Node("n1"))
					n.Spec.Availability = objectv1.NodeAvailability(rng.IntN(4))
					if err := tx.UpdateNode(n); err != nil {
						return err
					}
				}
			}
			seen = &raftv1.Snapshot{Nodes: tx.Nodes(), Services: tx.Services(), Tasks: tx.Tasks()}
			return nil
		})
		if err != nil {
			t.Fatalf("seed %d: Prepare = %v", seed, err)
		}
		mustApply(t, s, 2, txn)
		checkIndexes(t, s)
		got := s.Snapshot()
		got = &raftv1.Snapshot{Nodes: got.Nodes, Services: got.Services, Tasks: got.Tasks}
		seen.Services = slices.Clone(seen.Services)
		sortByID(seen.Services)
		if a, b := withoutMeta(got), withoutMeta(seen); !proto.Equal(a, b) {
			t.Errorf("seed %d: state after Apply = %v, want what the Tx saw: %v", seed, a, b)
		}
	}
}

// withoutMeta returns a copy of snap with every meta cleared.
func withoutMeta(snap *raftv1.Snapshot) *raftv1.Snapshot {
	c := clone(snap)
	for _, n := range c.Nodes {
		n.Meta = nil
	}
	for _, s := range c.Services {
		s.Meta = nil
	}
	for _, tk := range c.Tasks {
		tk.Meta = nil
	}
	return c
}

func TestClusterWithoutLock(t *testing.T) {
	s := New()
	if s.Cluster() != nil {
		t.Fatal("Cluster() of an empty store is not nil")
	}
	mustApply(t, s, 1, creates(testCluster("c1")))
	if got := s.Cluster().GetId(); got != "c1" {
		t.Fatalf("Cluster() after create = %q, want c1", got)
	}
	renamed := withVersion(testCluster("c1"), 1)
	renamed.Spec.Annotations.Name = "renamed"
	mustApply(t, s, 2, txn(act(raftv1.ActionKind_ACTION_KIND_UPDATE, renamed)))
	if got := s.Cluster().GetSpec().GetAnnotations().GetName(); got != "renamed" {
		t.Errorf("Cluster() after update has name %q, want renamed", got)
	}
	// A failed update leaves it as it was.
	stale := withVersion(testCluster("c1"), 1)
	stale.Spec.Annotations.Name = "stale"
	if errs := s.Apply(3, command(txn(act(raftv1.ActionKind_ACTION_KIND_UPDATE, stale)))); errs[0] == nil {
		t.Fatal("a stale update applied")
	}
	if got := s.Cluster().GetSpec().GetAnnotations().GetName(); got != "renamed" {
		t.Errorf("Cluster() after a failed update has name %q, want renamed", got)
	}
	// Restore replaces it.
	other := New()
	if err := other.Restore(&raftv1.Snapshot{Version: SnapshotVersion, Index: 7, Clusters: []*objectv1.Cluster{testCluster("c9")}}); err != nil {
		t.Fatalf("Restore = %v", err)
	}
	if got := other.Cluster().GetId(); got != "c9" {
		t.Errorf("Cluster() after Restore = %q, want c9", got)
	}
}
