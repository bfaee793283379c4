package state

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

const (
	manager = objectv1.NodeRole_NODE_ROLE_MANAGER
	worker  = objectv1.NodeRole_NODE_ROLE_WORKER
	active  = objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE
	drain   = objectv1.NodeAvailability_NODE_AVAILABILITY_DRAIN
	running = objectv1.TaskState_TASK_STATE_RUNNING
	pending = objectv1.TaskState_TASK_STATE_PENDING
	failed  = objectv1.TaskState_TASK_STATE_FAILED
	stopped = objectv1.TaskState_TASK_STATE_SHUTDOWN
)

func TestApplyRules(t *testing.T) {
	// Every case runs on seeded(t), where every object is at version 1.
	tests := []struct {
		name string
		txn  *raftv1.Transaction
		want error // nil: the transaction applies
	}{
		{"create new node", creates(testNode("n3", worker, active)), nil},
		{"create existing node", creates(testNode("n1", worker, active)), sdk.ErrAlreadyExists},
		{"update at read version", txn(act(opUpdate, withVersion(testNode("n1", worker, drain), 1))), nil},
		{"update at stale version", txn(act(opUpdate, withVersion(testNode("n1", worker, drain), 0))), ErrVersionConflict},
		{"update at future version", txn(act(opUpdate, withVersion(testTask("t1", "s1", "n2", running, running), 2))), sdk.ErrFailedPrecondition},
		{"update missing", txn(act(opUpdate, withVersion(testTask("t9", "s1", "", running, pending), 1))), sdk.ErrNotFound},
		{"delete without version", txn(act(opDelete, &objectv1.Task{Id: "t1"})), nil},
		{"delete at version", txn(act(opDelete, withVersion(&objectv1.Task{Id: "t1"}, 1))), nil},
		{"delete at stale version", txn(act(opDelete, withVersion(&objectv1.Node{Id: "n1"}, 7))), ErrVersionConflict},
		{"delete missing", txn(act(opDelete, &objectv1.Service{Id: "s9"})), sdk.ErrNotFound},
		{"unspecified kind", txn(act(raftv1.ActionKind_ACTION_KIND_UNSPECIFIED, testNode("n3", worker, active))), sdk.ErrInvalidArgument},
		{"unknown kind", txn(act(raftv1.ActionKind(42), testNode("n3", worker, active))), sdk.ErrInvalidArgument},
		{"no target", txn(&raftv1.StoreAction{Kind: opCreate}), sdk.ErrInvalidArgument},
		{"nil object in target", txn(&raftv1.StoreAction{Kind: opCreate, Target: &raftv1.StoreAction_Task{}}), sdk.ErrInvalidArgument},
		{"nil cluster in target", txn(&raftv1.StoreAction{Kind: opUpdate, Target: &raftv1.StoreAction_Cluster{}}), sdk.ErrInvalidArgument},
		{"nil action", txn(nil), sdk.ErrInvalidArgument},
		{"empty id", creates(testTask("", "s1", "", running, pending)), sdk.ErrInvalidArgument},
		{"empty delete id", txn(act(opDelete, &objectv1.Node{})), sdk.ErrInvalidArgument},
		{"service without name", creates(testService("s3", "")), sdk.ErrInvalidArgument},
		{"service name taken on create", creates(testService("s3", "web")), sdk.ErrAlreadyExists},
		{"service renamed to a taken name", txn(act(opUpdate, withVersion(testService("s2", "web"), 1))), sdk.ErrAlreadyExists},
		{"service names swapped in one transaction", txn(
			act(opUpdate, withVersion(testService("s1", "db"), 1)),
			act(opUpdate, withVersion(testService("s2", "web"), 1)),
		), nil},
		{"name freed and reused in one transaction", txn(
			act(opCreate, testService("s3", "web")),
			act(opDelete, &objectv1.Service{Id: "s1"}),
		), nil},
		{"second cluster with the same id", creates(testCluster("c1")), sdk.ErrAlreadyExists},
		{"second cluster with another id", creates(testCluster("c2")), sdk.ErrInvalidArgument},
		{"cluster update", txn(act(opUpdate, withVersion(testCluster("c1"), 1))), nil},
		{"cluster update of another id", txn(act(opUpdate, withVersion(testCluster("c2"), 1))), sdk.ErrNotFound},
		{"cluster update at stale version", txn(act(opUpdate, withVersion(testCluster("c1"), 0))), ErrVersionConflict},
		{"cluster delete", txn(act(opDelete, &objectv1.Cluster{Id: "c1"})), sdk.ErrInvalidArgument},
		{"delete then create the same id", txn(
			act(opDelete, &objectv1.Task{Id: "t1"}),
			act(opCreate, testTask("t1", "s2", "n2", running, pending)),
		), nil},
		{"create twice in one transaction", creates(testNode("n3", worker, active), testNode("n3", worker, active)), sdk.ErrAlreadyExists},
		{"failure after successes", txn(
			act(opCreate, testTask("t9", "s1", "", running, pending)),
			act(opUpdate, withVersion(testTask("t1", "s1", "n2", running, failed), 1)),
			act(opDelete, &objectv1.Node{Id: "n2"}),
			act(opUpdate, withVersion(testService("s1", "db"), 1)),
			act(opDelete, &objectv1.Task{Id: "t404"}),
		), sdk.ErrNotFound},
		{"failure on a name after successes", txn(
			act(opCreate, testTask("t9", "s1", "", running, pending)),
			act(opUpdate, withVersion(testService("s1", "db"), 1)),
		), sdk.ErrAlreadyExists},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := seeded(t)
			before := s.Snapshot()
			errs := s.Apply(2, command(tc.txn))
			if len(errs) != 1 {
				t.Fatalf("Apply = %d results, want 1", len(errs))
			}
			switch {
			case tc.want == nil && errs[0] != nil:
				t.Fatalf("Apply = %v, want nil", errs[0])
			case tc.want != nil && !errors.Is(errs[0], tc.want):
				t.Fatalf("Apply = %v, want an error of kind %v", errs[0], tc.want)
			case tc.want != nil:
				// A failed transaction changes nothing; only the index moves.
				before.Index = 2
				if after := s.Snapshot(); !proto.Equal(after, before) {
					t.Errorf("state after failed transaction = %v, want %v", after, before)
				}
			}
			checkIndexes(t, s)
		})
	}
}

func TestApplySwapsNames(t *testing.T) {
	s := seeded(t)
	mustApply(t, s, 2, txn(
		act(opUpdate, withVersion(testService("s1", "db"), 1)),
		act(opUpdate, withVersion(testService("s2", "web"), 1)),
	))
	s.View(func(tx *ReadTx) {
		if got := tx.ServiceByName("db").GetId(); got != "s1" {
			t.Errorf("ServiceByName(db) = %q, want s1", got)
		}
		if got := tx.ServiceByName("web").GetId(); got != "s2" {
			t.Errorf("ServiceByName(web) = %q, want s2", got)
		}
	})
}

func TestApplyResultPerTransaction(t *testing.T) {
	s := seeded(t)
	errs := s.Apply(2, command(
		creates(testTask("t4", "s1", "", running, pending)),
		creates(testTask("t5", "s1", "", running, pending), testTask("t1", "s1", "", running, pending)),
		// A later transaction sees the earlier ones of the same command.
		txn(act(opUpdate, withVersion(testTask("t4", "s1", "n1", running, running), 2))),
	))
	if len(errs) != 3 {
		t.Fatalf("Apply = %d results, want 3", len(errs))
	}
	for i, want := range []error{nil, sdk.ErrAlreadyExists, nil} {
		if (want == nil) != (errs[i] == nil) || !errors.Is(errs[i], want) {
			t.Errorf("Apply result %d = %v, want %v", i, errs[i], want)
		}
	}
	s.View(func(tx *ReadTx) {
		if got := tx.Task("t4").GetNodeId(); got != "n1" {
			t.Errorf("Task(t4).NodeId = %q, want n1", got)
		}
		if got := tx.Task("t5"); got != nil {
			t.Errorf("Task(t5) = %v, want nil (its transaction failed)", got)
		}
		if got := tx.Task("t1").GetNodeId(); got != "n1" {
			t.Errorf("Task(t1).NodeId = %q, want n1 (unchanged)", got)
		}
	})
	checkIndexes(t, s)
}

func TestApplyVersionIsIndex(t *testing.T) {
	created := timestamppb.New(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	later := timestamppb.New(time.Date(2025, 2, 2, 3, 4, 5, 0, time.UTC))
	s := New()
	tk := testTask("t1", "s1", "", running, pending)
	tk.Meta = &objectv1.Meta{Version: 99, CreatedAt: created, UpdatedAt: created}
	mustApply(t, s, 3, creates(tk, testNode("n1", worker, active)))

	up := testTask("t1", "s1", "n1", running, running)
	// A writer cannot rewrite created_at.
	up.Meta = &objectv1.Meta{Version: 3, CreatedAt: later, UpdatedAt: later}
	mustApply(t, s, 7, txn(act(opUpdate, up)))

	s.View(func(tx *ReadTx) {
		if got := tx.Index(); got != 7 {
			t.Errorf("Index() = %d, want 7", got)
		}
		m := tx.Task("t1").GetMeta()
		want := &objectv1.Meta{Version: 7, CreatedAt: created, UpdatedAt: later}
		if !proto.Equal(m, want) {
			t.Errorf("Task(t1).Meta = %v, want %v", m, want)
		}
		if got := tx.Node("n1").GetMeta().GetVersion(); got != 3 {
			t.Errorf("Node(n1).Meta.Version = %d, want 3 (untouched since index 3)", got)
		}
	})
}

func TestApplyIndexMustGrow(t *testing.T) {
	s := seeded(t)
	before := s.Snapshot()
	for _, index := range []uint64{0, 1} {
		errs := s.Apply(index, command(creates(testNode("n3", worker, active))))
		if len(errs) != 1 || !errors.Is(errs[0], sdk.ErrFailedPrecondition) {
			t.Errorf("Apply(%d) after index 1 = %v, want one failed precondition", index, errs)
		}
	}
	if after := s.Snapshot(); !proto.Equal(after, before) {
		t.Errorf("state after refused Apply = %v, want %v", after, before)
	}
}

func TestApplyEmptyCommandMovesIndex(t *testing.T) {
	s := seeded(t)
	for _, cmd := range []*raftv1.Command{nil, {}, command(txn())} {
		idx := s.Snapshot().Index + 1
		errs := s.Apply(idx, cmd)
		for _, err := range errs {
			if err != nil {
				t.Errorf("Apply(%d, %v) = %v, want nil", idx, cmd, err)
			}
		}
		if got := s.Snapshot().Index; got != idx {
			t.Errorf("index after Apply(%d, %v) = %d, want %d", idx, cmd, got, idx)
		}
	}
}

// TaskStateEntered moves only for changes into a state: a create in it, or
// an update from another state; not for an update within it, nor for a
// failed transaction.
func TestTaskStateEntered(t *testing.T) {
	s := seeded(t) // t1 running, t2 assigned, t3 pending
	for _, st := range []objectv1.TaskState{running, pending, failed} {
		if got := s.TaskStateEntered(st); got.IsZero() != (st == failed) {
			t.Errorf("after seeding: TaskStateEntered(%v) = %v", st, got)
		}
	}
	seededRunning := s.TaskStateEntered(running)
	time.Sleep(time.Millisecond)
	before := time.Now()
	mustApply(t, s, 2, txn(act(opUpdate, withVersion(testTask("t2", "s1", "n2", running, running), 1))))
	if got := s.TaskStateEntered(running); got.Before(before) {
		t.Errorf("after t2 ran: TaskStateEntered(running) = %v, want at or after %v", got, before)
	}
	entered := s.TaskStateEntered(running)
	time.Sleep(time.Millisecond)
	// An update that keeps the state, and a failed transaction into a new one.
	mustApply(t, s, 3, txn(act(opUpdate, withVersion(testTask("t1", "s1", "n2", running, running), 1))))
	s.Apply(4, command(txn(act(opUpdate, withVersion(testTask("t3", "s1", "", running, failed), 99)))))
	if got := s.TaskStateEntered(running); !got.Equal(entered) {
		t.Errorf("after an update within running: TaskStateEntered(running) = %v, want %v", got, entered)
	}
	if got := s.TaskStateEntered(failed); !got.IsZero() {
		t.Errorf("after a failed transaction: TaskStateEntered(failed) = %v, want zero", got)
	}
	if !entered.After(seededRunning) {
		t.Errorf("TaskStateEntered(running) did not move: %v", entered)
	}
	if got := s.TaskStateEntered(objectv1.TaskState(1000)); !got.IsZero() {
		t.Errorf("TaskStateEntered(1000) = %v, want zero", got)
	}
}
