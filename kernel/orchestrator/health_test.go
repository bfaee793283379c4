package orchestrator

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

const (
	healthStarting  = objectv1.TaskHealth_TASK_HEALTH_STARTING
	healthHealthy   = objectv1.TaskHealth_TASK_HEALTH_HEALTHY
	healthUnhealthy = objectv1.TaskHealth_TASK_HEALTH_UNHEALTHY
)

// reportHealth reports a task RUNNING on n1 with a health, as the agent
// does when the task's health check changes.
func (e *env) reportHealth(taskID string, h objectv1.TaskHealth) {
	e.t.Helper()
	e.reportStatus(taskID, "n1", &objectv1.TaskStatus{State: stateRunning, Health: h})
}

// firstReplacement starts an update to image2 and returns slot 1's new task
// once it is there (stop-first: once the old one reported it stopped).
func (e *env) firstReplacement() *objectv1.Task {
	e.t.Helper()
	e.setImage("web", image2)
	e.waitFor("slot 1 replaced", func(tx *state.ReadTx) bool { return len(e.withImage("web", image2)) == 1 })
	e.idle()
	e.stopRetired("web")
	e.idle()
	return e.withImage("web", image2)[1]
}

// TestUnhealthyTaskReplaced: a task its node failed for its health check is
// replaced in its slot, as any failed task, per its restart policy.
func TestUnhealthyTaskReplaced(t *testing.T) {
	bubble(t, func(e *env) {
		e.startUpdating(updatingService(2, 1, stopFirst, onPause))
		old := e.slotTask("web", 1)
		e.reportHealth(old.GetId(), healthHealthy)
		e.idle()
		e.reportStatus(old.GetId(), "", &objectv1.TaskStatus{State: stateFailed, Health: healthUnhealthy, ExitCode: 137,
			Err: "unhealthy container: health check failed 3 times in a row: exit code 1: not ready"})
		e.waitFor("slot 1's replacement", func(tx *state.ReadTx) bool {
			for _, t := range desired(inSlot(tx, "web", 1), stateRunning) {
				if t.GetId() != old.GetId() {
					return true
				}
			}
			return false
		})
		if got := e.task(old.GetId()).GetDesiredState(); got == stateRunning {
			t.Errorf("unhealthy task's desired_state = %v, want it retired", got)
		}
	})
}

// TestRollingUpdateWaitsForHealthy: a new task with a health check counts as
// started only once it is healthy: the next batch waits for that, and the
// monitor period runs from then.
func TestRollingUpdateWaitsForHealthy(t *testing.T) {
	bubble(t, func(e *env) {
		e.startUpdating(updatingService(2, 1, stopFirst, onPause))
		repl := e.firstReplacement()
		e.reportHealth(repl.GetId(), healthStarting)
		time.Sleep(10 * testMonitor)
		e.idle()
		if n := len(e.withImage("web", image2)); n != 1 {
			t.Fatalf("tasks with the new image while slot 1's runs unchecked = %d, want 1", n)
		}
		if st := e.service("web").GetUpdateStatus(); st.GetState() != updating {
			t.Fatalf("update status while slot 1's task starts = %v, want UPDATING", st)
		}

		e.reportHealth(repl.GetId(), healthHealthy)
		healthy := time.Now()
		time.Sleep(testMonitor - time.Second)
		synctest.Wait()
		if n := len(e.withImage("web", image2)); n != 1 {
			t.Fatalf("tasks with the new image 1s before the monitor period after healthy = %d, want 1", n)
		}
		e.waitFor("slot 2 replaced", func(tx *state.ReadTx) bool { return len(e.withImage("web", image2)) == 2 })
		if d := time.Since(healthy); d < testMonitor {
			t.Errorf("slot 2 replaced %v after slot 1's task was healthy, want at least the monitor period %v", d, testMonitor)
		}
	})
}

// TestRollingUpdateUnhealthyFails: a new task whose health check fails is an
// update failure, with the update's failure action: pause or roll back.
func TestRollingUpdateUnhealthyFails(t *testing.T) {
	for _, tt := range []struct {
		action objectv1.FailureAction
		want   objectv1.UpdateState
		image  string
	}{
		{onPause, updatePaused, image2},
		{onRollback, rollbackStarted, image1},
	} {
		t.Run(tt.action.String(), func(t *testing.T) {
			bubble(t, func(e *env) {
				e.startUpdating(updatingService(3, 1, stopFirst, tt.action))
				repl := e.firstReplacement()
				e.reportHealth(repl.GetId(), healthStarting)
				e.idle()
				e.reportHealth(repl.GetId(), healthUnhealthy)
				st := e.waitUpdateState("web", tt.want)
				if want := "task " + repl.GetId() + " is unhealthy"; !strings.Contains(st.GetMessage(), want) {
					t.Errorf("update message = %q, want it to say %q", st.GetMessage(), want)
				}
				if got := e.service("web").GetSpec().GetTask().GetContainer().GetImage(); got != tt.image {
					t.Errorf("service image = %s, want %s", got, tt.image)
				}
				// The node fails the task: the update stays as it is.
				e.reportStatus(repl.GetId(), "", &objectv1.TaskStatus{State: stateFailed, Health: healthUnhealthy, ExitCode: 137, Err: "unhealthy container"})
				e.idle()
				if got := e.service("web").GetUpdateStatus().GetState(); got != tt.want {
					t.Errorf("update state after the task failed = %v, want %v", got, tt.want)
				}
				if n := len(e.withImage("web", image2)); tt.action == onPause && n > 1 {
					t.Errorf("tasks with the new image after the pause = %d, want at most 1", n)
				}
			})
		})
	}
}

// TestRollingUpdateStartFirstWaitsForHealthy: start-first, the old task is
// told to stop only once its replacement is healthy.
func TestRollingUpdateStartFirstWaitsForHealthy(t *testing.T) {
	bubble(t, func(e *env) {
		old1, repl := e.startFirstReplacement()
		e.reportHealth(repl.GetId(), healthStarting)
		e.idle()
		if got := e.task(old1.GetId()).GetDesiredState(); got != stateRunning {
			t.Fatalf("old task while its replacement's health check has not passed: desired_state %v, want %v", got, stateRunning)
		}
		e.reportHealth(repl.GetId(), healthHealthy)
		e.waitFor("the old task told to stop", func(tx *state.ReadTx) bool {
			return tx.Task(old1.GetId()).GetDesiredState() == stateShutdown
		})
	})
}
