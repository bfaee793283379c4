package orchestrator

import (
	"fmt"
	"testing"

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
func TestReplicatedRestartPolicy(t *testing.T) {
	tests := []struct {
		cond    objectv1.RestartCondition
		end     objectv1.TaskState
		replace bool
	}{
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

				e.report(old, "", tt.end)
				e.waitFor("the ended task handled", func(tx *state.ReadTx) bool {
					return tx.Task(old).GetDesiredState() != stateRunning
				})
				e.idle()

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
