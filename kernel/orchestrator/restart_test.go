package orchestrator

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func TestRestarts(t *testing.T) {
	tests := []struct {
		cond objectv1.RestartCondition
		end  objectv1.TaskState
		want bool
	}{
		{restartAny, stateFailed, true},
		{restartAny, stateComplete, true},
		{restartAny, stateRejected, true},
		{restartUnset, stateFailed, true},
		{restartUnset, stateComplete, true},
		{restartFailure, stateFailed, true},
		{restartFailure, stateRejected, true},
		{restartFailure, stateShutdown, true},
		{restartFailure, stateComplete, false},
		{restartNone, stateFailed, false},
		{restartNone, stateComplete, false},
		{restartNone, stateRejected, false},
	}
	for _, tt := range tests {
		svc := replicatedService("web", 1, tt.cond)
		task := &objectv1.Task{Status: &objectv1.TaskStatus{State: tt.end}}
		if got := restarts(svc, task); got != tt.want {
			t.Errorf("restarts(%v, %v) = %t, want %t", tt.cond, tt.end, got, tt.want)
		}
	}
}

// TestReplicatedRestartPolicy ends a running task as a worker reports it and
// checks whether its slot gets a new task, then that the decision holds:
// neither another pass over the service (a scale up) nor a new orchestrator
// (a leader change) brings back a task the policy let end.
// restartCase is a case of a restart-policy test: a task that ends in end
// under restart condition cond, and whether its slot (node) gets a new task.
type restartCase struct {
	cond    objectv1.RestartCondition
	end     objectv1.TaskState
	replace bool
}

// endTask reports a task ended, as its worker would, and waits until the
// orchestrator has handled it.
func (e *env) endTask(id string, end objectv1.TaskState) {
	e.report(id, "", end)
	e.waitFor("the ended task handled", func(tx *state.ReadTx) bool {
		return tx.Task(id).GetDesiredState() != stateRunning
	})
	e.idle()
}

func TestReplicatedRestartPolicy(t *testing.T) {
	tests := []restartCase{
		{restartAny, stateFailed, true},
		{restartAny, stateComplete, true},
		{restartUnset, stateFailed, true},
		{restartFailure, stateFailed, true},
		{restartFailure, stateRejected, true},
		{restartFailure, stateComplete, false},
		{restartNone, stateFailed, false},
		{restartNone, stateComplete, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/%v", tt.cond, tt.end), func(t *testing.T) {
			bubble(t, func(e *env) {
				e.createService(replicatedService("web", 2, tt.cond))
				e.start()
				e.waitFor("2 tasks", func(tx *state.ReadTx) bool { return countDesired(tx, "web", stateRunning) == 2 })
				e.idle()
				old := e.slotTask("web", 1).GetId()
				e.report(old, "n1", stateRunning)
				e.idle()
				other := e.slotTask("web", 2)

				e.endTask(old, tt.end)

				check := func(when string) {
					t.Helper()
					ended := e.task(old)
					if got := ended.GetStatus().GetState(); got != tt.end {
						t.Errorf("%s: ended task status.state = %v, want %v (the worker's report)", when, got, tt.end)
					}
					if got := ended.GetDesiredState(); got == stateRunning || got == stateNew || got == statePending {
						t.Errorf("%s: ended task desired_state = %v, want it no longer run", when, got)
					}
					var slot1 []*objectv1.Task
					e.st.View(func(tx *state.ReadTx) { slot1 = desired(inSlot(tx, "web", 1), stateRunning) })
					if tt.replace {
						if len(slot1) != 1 {
							t.Fatalf("%s: slot 1 has %d tasks desired running, want 1 replacement", when, len(slot1))
						}
						if slot1[0].GetId() == old || slot1[0].GetStatus().GetState() != statePending {
							t.Errorf("%s: slot 1 task = %v, want a new pending task", when, slot1[0])
						}
					} else if len(slot1) != 0 {
						t.Errorf("%s: slot 1 has %d tasks desired running, want none (restart %v, task %v)",
							when, len(slot1), tt.cond, tt.end)
					}
					want := 1 // the ended task, kept as history
					if tt.replace {
						want++
					}
					if got := len(inSlotAll(e, "web", 1)); got != want {
						t.Errorf("%s: slot 1 has %d tasks, want %d", when, got, want)
					}
					if got := e.task(other.GetId()); got.GetDesiredState() != stateRunning {
						t.Errorf("%s: slot 2 task = %v, want untouched %v", when, got, other)
					}
				}
				check("after the report")

				// Another pass over the service: scale it to 3.
				e.updateService("web", func(s *objectv1.Service) { s.GetSpec().GetReplicated().Replicas = 3 })
				e.waitFor("slot 3", func(tx *state.ReadTx) bool { return len(desired(inSlot(tx, "web", 3), stateRunning)) == 1 })
				e.idle()
				check("after a scale up")

				// A new leader's orchestrator starts from the store.
				e.stopRun()
				e.start()
				e.idle()
				check("after a restart")
			})
		})
	}
}

func inSlotAll(e *env, serviceID string, slot uint64) []*objectv1.Task {
	var out []*objectv1.Task
	e.st.View(func(tx *state.ReadTx) { out = inSlot(tx, serviceID, slot) })
	return out
}

// TestEndedTaskRestartsOnce checks that a replacement is made once, however
// many reports follow for the ended task.
func TestEndedTaskRestartsOnce(t *testing.T) {
	bubble(t, func(e *env) {
		e.createService(replicatedService("web", 1, restartAny))
		e.start()
		e.waitFor("1 task", func(tx *state.ReadTx) bool { return countDesired(tx, "web", stateRunning) == 1 })
		first := e.slotTask("web", 1).GetId()
		e.report(first, "n1", stateRunning)
		e.report(first, "", stateFailed)
		e.waitFor("a replacement", func(tx *state.ReadTx) bool {
			ts := desired(inSlot(tx, "web", 1), stateRunning)
			return len(ts) == 1 && ts[0].GetId() != first
		})
		second := e.slotTask("web", 1)
		// A late, repeated report of the ended task changes nothing.
		e.report(first, "", stateFailed)
		e.idle()
		if got := e.slotTask("web", 1); !proto.Equal(got, second) {
			t.Errorf("slot 1 after a repeated report = %v, want %v", got, second)
		}
		if got := len(e.tasks()); got != 2 {
			t.Errorf("tasks after one failure = %d, want 2", got)
		}

		// The replacement fails in turn: a third task.
		e.report(second.GetId(), "n2", stateFailed)
		e.waitFor("a second replacement", func(tx *state.ReadTx) bool {
			ts := desired(inSlot(tx, "web", 1), stateRunning)
			return len(ts) == 1 && ts[0].GetId() != second.GetId()
		})
		e.idle()
		if got := len(e.tasks()); got != 3 {
			t.Errorf("tasks after two failures = %d, want 3", got)
		}
	})
}

// failSlot1 reports the running task of slot 1 of "web" as failed, as its
// worker would, and returns it.
func failSlot1(e *env) *objectv1.Task {
	e.t.Helper()
	var cur *objectv1.Task
	e.st.View(func(tx *state.ReadTx) {
		for _, tk := range tx.TasksByService("web") {
			if tk.GetSlot() == 1 && tk.GetDesiredState() == stateRunning {
				cur = tk
			}
		}
	})
	if cur == nil {
		e.t.Fatal("no running task in slot 1")
	}
	e.report(cur.GetId(), "n1", stateRunning)
	e.report(cur.GetId(), "n1", stateFailed)
	return cur
}

func slot1Runnable(tx *state.ReadTx) int {
	n := 0
	for _, tk := range tx.TasksByService("web") {
		if tk.GetSlot() == 1 && tk.GetDesiredState() == stateRunning && !ended(tk) {
			n++
		}
	}
	return n
}

// TestRestartDelay: a failed task's replacement comes only once the
// policy's delay has passed since it ended.
func TestRestartDelay(t *testing.T) {
	bubble(t, func(e *env) {
		svc := replicatedService("web", 1, restartAny)
		svc.Spec.Task.Restart.Delay = durationpb.New(10 * time.Second)
		e.createService(svc)
		e.start()
		e.waitFor("the task", func(tx *state.ReadTx) bool { return slot1Runnable(tx) == 1 })
		e.idle()
		failSlot1(e)
		start := time.Now()
		e.waitFor("the replacement", func(tx *state.ReadTx) bool { return slot1Runnable(tx) == 1 })
		if waited := time.Since(start); waited < 10*time.Second || waited > 11*time.Second {
			t.Errorf("replacement after %s, want after the 10s delay", waited)
		}
	})
}

// TestRestartMaxAttempts: with max_attempts 2, the third failure of a slot
// within the window is not restarted; failures outside the window do not
// count.
func TestRestartMaxAttempts(t *testing.T) {
	bubble(t, func(e *env) {
		svc := replicatedService("web", 1, restartAny)
		svc.Spec.Task.Restart.MaxAttempts = 2
		svc.Spec.Task.Restart.Window = durationpb.New(time.Minute)
		e.createService(svc)
		e.start()
		for i := range 3 {
			e.waitFor(fmt.Sprintf("task %d", i+1), func(tx *state.ReadTx) bool { return slot1Runnable(tx) == 1 })
			e.idle()
			failSlot1(e)
			e.idle()
		}
		e.st.View(func(tx *state.ReadTx) {
			if n := slot1Runnable(tx); n != 0 {
				t.Errorf("after 3 failures within the window: %d runnable tasks in slot 1, want 0 (2 restarts at most)", n)
			}
		})
	})
}

// TestHistoryIsPruned: restarts keep at most task_history_retention
// retired tasks per slot.
func TestHistoryIsPruned(t *testing.T) {
	bubble(t, func(e *env) {
		e.raft.write(e.t, func(tx *state.Tx) error {
			return tx.CreateCluster(&objectv1.Cluster{Id: "c", Spec: &objectv1.ClusterSpec{
				Orchestration: &objectv1.OrchestrationConfig{TaskHistoryRetention: 2}}})
		})
		e.createService(replicatedService("web", 1, restartAny))
		e.start()
		for i := range 6 {
			e.waitFor(fmt.Sprintf("task %d", i+1), func(tx *state.ReadTx) bool { return slot1Runnable(tx) == 1 })
			e.idle()
			failSlot1(e)
			e.idle()
		}
		e.waitFor("history pruned to 2", func(tx *state.ReadTx) bool {
			return len(tx.TasksByService("web")) == 3 // 2 retired + the running one
		})
	})
}
