package orchestrator

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

func TestRunReturnsNilOnCancel(t *testing.T) {
	tests := []struct {
		name string
		// before runs with the orchestrator started, before the cancel.
		before func(e *env)
	}{
		{"idle", func(e *env) { e.idle() }},
		{"at once", func(e *env) {}},
		// The cancel comes while the orchestrator gathers a burst of events.
		{"while settling", func(e *env) {
			e.idle()
			e.createService(replicatedService("web", 1, restartAny))
			synctest.Wait()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bubble(t, func(e *env) {
				e.createNode(node("a", availActive, nodeReady))
				e.start()
				tt.before(e)
				e.stopRun() // fails the test unless Run returns nil
			})
		})
	}
}

// TestRunReturnsWriteError checks that a write failing for a reason other
// than a conflict stops Run with that error, for the manager to act on.
func TestRunReturnsWriteError(t *testing.T) {
	errDisk := errors.New("disk on fire")
	tests := []struct {
		name string
		err  error
	}{
		{"plain", errDisk},
		{"unavailable", sdk.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t)
				e.createService(replicatedService("web", 1, restartAny))
				e.raft.setErr(tt.err)
				err := New(e.raft, e.st, slog.New(slog.DiscardHandler)).Run(context.Background())
				if !errors.Is(err, tt.err) {
					t.Errorf("Run with Update failing with %v = %v, want that error", tt.err, err)
				}
			})
		})
	}
}

// TestConflictIsRetried lets the scheduler assign a pending task between the
// orchestrator's Prepare and its Apply: the orchestrator's write, based on
// the older version, is refused, and it must re-read and try again rather
// than stop.
func TestConflictIsRetried(t *testing.T) {
	bubble(t, func(e *env) {
		e.createNode(node("n1", availActive, nodeReady))
		e.createService(replicatedService("web", 2, restartAny))
		e.start()
		e.waitFor("2 tasks", func(tx *state.ReadTx) bool { return countDesired(tx, "web", stateRunning) == 2 })
		e.idle()
		slot1 := e.slotTask("web", 1).GetId()
		slot2 := e.slotTask("web", 2).GetId()

		e.raft.setInterfere(func(tx *state.Tx) error {
			next := proto.Clone(tx.Task(slot1)).(*objectv1.Task)
			next.NodeId = "n1"
			next.Status = &objectv1.TaskStatus{State: stateAssigned}
			return tx.UpdateTask(next)
		})
		before, _ := e.raft.counts()
		e.updateService("web", func(s *objectv1.Service) {
			s.GetSpec().GetTask().GetContainer().Image = "registry.local:5000/web:2"
		})
		e.waitFor("slot 2 refreshed", func(tx *state.ReadTx) bool { return tx.Task(slot2).GetSpecVersion() == 2 })
		e.idle()

		if got, _ := e.raft.counts(); got-before < 2 {
			t.Errorf("Update calls after a conflict = %d, want at least 2 (a retry)", got-before)
		}
		got := e.task(slot1)
		if got.GetStatus().GetState() != stateAssigned || got.GetNodeId() != "n1" {
			t.Errorf("task assigned during the conflict = %v, want the scheduler's write kept", got)
		}
		if got.GetSpecVersion() != 1 {
			t.Errorf("task assigned during the conflict has spec_version %d, want 1: a placed task is not refreshed", got.GetSpecVersion())
		}
		if e.exited() {
			t.Errorf("Run returned after a conflict (%v), want it to retry and go on", e.stop())
			e.stop = nil
		}
	})
}

// TestWatchClosedStartsOver replaces the state under a running orchestrator
// (as installing a Raft snapshot does), which closes its watch: it must
// rebuild from the new state.
func TestWatchClosedStartsOver(t *testing.T) {
	bubble(t, func(e *env) {
		e.createService(replicatedService("web", 1, restartAny))
		e.start()
		e.waitFor("web's task", func(tx *state.ReadTx) bool { return countDesired(tx, "web", stateRunning) == 1 })
		e.idle()

		// The snapshot holds a service of 2 replicas and none of its tasks.
		other := state.New()
		svc := replicatedService("db", 2, restartAny)
		txn, err := other.Prepare(time.Now(), func(tx *state.Tx) error { return tx.CreateService(svc) })
		if err != nil {
			t.Fatal(err)
		}
		var index uint64
		e.st.View(func(tx *state.ReadTx) { index = tx.Index() + 10 })
		if errs := other.Apply(index, &raftv1.Command{Transactions: []*raftv1.Transaction{txn}}); errs[0] != nil {
			t.Fatal(errs[0])
		}
		e.raft.mu.Lock()
		err = e.st.Restore(other.Snapshot())
		e.raft.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}

		e.waitFor("db's tasks", func(tx *state.ReadTx) bool { return countDesired(tx, "db", stateRunning) == 2 })
		e.idle()
		if got := len(e.tasks()); got != 2 {
			t.Errorf("tasks after restoring a snapshot = %d, want 2 (db's)", got)
		}
	})
}

// TestRestartCreatesNothingNew stops the orchestrator once everything has
// converged and starts a new one on the same store, as a new leader does: it
// must find nothing to do.
func TestRestartCreatesNothingNew(t *testing.T) {
	bubble(t, func(e *env) {
		e.createNode(node("a", availActive, nodeReady))
		e.createNode(node("b", availActive, nodeReady))
		e.createNode(node("c", availDrain, nodeReady))
		e.createService(replicatedService("web", 3, restartAny))
		e.createService(replicatedService("job", 2, restartNone))
		e.createService(globalService("agent", restartAny))
		e.start()
		e.waitFor("7 tasks", func(tx *state.ReadTx) bool { return len(tx.Tasks()) == 7 })
		e.idle()
		// Some history: a placed task, a failed and replaced one, a finished
		// job, a scaled-down one.
		e.report(e.slotTask("web", 1).GetId(), "a", stateRunning)
		e.report(e.slotTask("web", 2).GetId(), "b", stateFailed)
		e.report(e.slotTask("job", 1).GetId(), "a", stateComplete)
		e.report(e.slotTask("web", 3).GetId(), "a", stateRunning)
		e.report(e.nodeTask("agent", "a").GetId(), "", stateRunning)
		e.idle()
		e.updateService("web", func(s *objectv1.Service) { s.GetSpec().GetReplicated().Replicas = 2 })
		e.waitFor("web at 2", func(tx *state.ReadTx) bool { return countDesired(tx, "web", stateRunning) == 2 })
		e.idle()
		e.stopRun()

		before := e.st.Snapshot()
		_, commits := e.raft.counts()

		e.start()
		e.idle()
		if _, got := e.raft.counts(); got != commits {
			t.Errorf("a restarted orchestrator committed %d writes, want 0", got-commits)
		}
		if after := e.st.Snapshot(); !proto.Equal(after, before) {
			t.Errorf("state after a restart changed:\n got %v\nwant %v", after, before)
		}
	})
}

// TestStartCleansUpRemovedServices removes a service while no orchestrator
// runs (a leader change between the removal and its handling): the next one
// retires the orphaned tasks from its first view.
func TestStartCleansUpRemovedServices(t *testing.T) {
	bubble(t, func(e *env) {
		e.createNode(node("n1", availActive, nodeReady))
		e.createService(replicatedService("web", 2, restartAny))
		e.start()
		e.waitFor("2 tasks", func(tx *state.ReadTx) bool { return countDesired(tx, "web", stateRunning) == 2 })
		e.report(e.slotTask("web", 1).GetId(), "a", stateRunning)
		e.idle()
		running := e.slotTask("web", 1).GetId()
		pending := e.slotTask("web", 2).GetId()
		e.stopRun()

		e.removeService("web")
		e.start()
		e.waitFor("web's tasks retired", func(tx *state.ReadTx) bool { return countDesired(tx, "web", stateRunning) == 0 })
		e.idle()
		if got := e.task(pending); got != nil {
			t.Errorf("never-placed orphan = %v, want it deleted", got)
		}
		if got := e.task(running).GetDesiredState(); got != stateShutdown {
			t.Errorf("placed orphan desired_state = %v, want %v", got, stateShutdown)
		}
	})
}

func TestMark(t *testing.T) {
	create, update, del := raftv1.ActionKind_ACTION_KIND_CREATE, raftv1.ActionKind_ACTION_KIND_UPDATE, deleteKind
	task := func(desired, observed objectv1.TaskState) *objectv1.Task {
		return &objectv1.Task{Id: "t", ServiceId: "s", DesiredState: desired, Status: &objectv1.TaskStatus{State: observed}}
	}
	tests := []struct {
		name      string
		ev        state.Event
		wantDirty bool
		wantNodes bool
		// wantStarted: the service needs a look if a rolling update is
		// open (the caller checks).
		wantStarted bool
	}{
		{"service created", state.Event{Kind: create, Service: &objectv1.Service{Id: "s"}}, true, false, false},
		{"service updated", state.Event{Kind: update, Service: &objectv1.Service{Id: "s"}}, true, false, false},
		{"service deleted", state.Event{Kind: del, Service: &objectv1.Service{Id: "s"}}, true, false, false},
		{"task created", state.Event{Kind: create, Task: task(stateRunning, statePending)}, false, false, false},
		{"task assigned", state.Event{Kind: update, Task: task(stateRunning, stateAssigned)}, false, false, false},
		{"task started", state.Event{Kind: update, Task: task(stateRunning, stateRunning), OldTask: task(stateRunning, objectv1.TaskState_TASK_STATE_STARTING)}, false, false, true},
		{"task still running", state.Event{Kind: update, Task: task(stateRunning, stateRunning), OldTask: task(stateRunning, stateRunning)}, false, false, false},
		{"task failed", state.Event{Kind: update, Task: task(stateRunning, stateFailed)}, true, false, false},
		{"task complete", state.Event{Kind: update, Task: task(stateRunning, stateComplete)}, true, false, false},
		{"task shut down as asked", state.Event{Kind: update, Task: task(stateShutdown, stateShutdown)}, false, false, false},
		{"task deleted", state.Event{Kind: del, Task: task(stateShutdown, stateShutdown)}, true, false, false},
		{"node created", state.Event{Kind: create, Node: &objectv1.Node{Id: "n"}}, false, true, false},
		{"node deleted", state.Event{Kind: del, Node: &objectv1.Node{Id: "n"}}, false, true, false},
		{"cluster updated", state.Event{Kind: update, Cluster: &objectv1.Cluster{Id: "c"}}, false, false, false},
	}
	for _, tt := range tests {
		dirty, started := map[string]bool{}, map[string]bool{}
		gotNodes := mark(tt.ev, dirty, nil, started)
		if gotNodes != tt.wantNodes || dirty["s"] != tt.wantDirty || len(dirty) > 1 || started["s"] != tt.wantStarted || len(started) > 1 {
			t.Errorf("mark(%s) = %t, dirty %v, started %v; want %t, dirty[s] = %t, started[s] = %t", tt.name, gotNodes, dirty, started, tt.wantNodes, tt.wantDirty, tt.wantStarted)
		}
	}
}
