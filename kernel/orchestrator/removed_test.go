package orchestrator

import (
	"testing"

	"github.com/shoalhq/shoal/kernel/state"
)

// TestRemovedServiceTasksDeletedOnceStopped: the placed tasks of a removed
// service are deleted as soon as their node reports them stopped; nothing
// else would look at a service that is gone (found by kernel/e2etest:
// `shoal service rm` left its tasks, and their containers, for ever).
func TestRemovedServiceTasksDeletedOnceStopped(t *testing.T) {
	bubble(t, func(e *env) {
		e.createService(replicatedService("web", 2, restartAny))
		e.start()
		e.waitFor("2 tasks", func(tx *state.ReadTx) bool { return len(tx.Tasks()) == 2 })
		e.idle()
		first, second := e.slotTask("web", 1), e.slotTask("web", 2)
		e.report(first.GetId(), "n1", stateRunning)
		e.report(second.GetId(), "n1", stateRunning)
		e.idle()

		e.removeService("web")
		e.waitFor("web's tasks retired", func(tx *state.ReadTx) bool { return countDesired(tx, "web", stateRunning) == 0 })
		e.idle()
		e.report(first.GetId(), "", stateShutdown)
		e.waitFor("the stopped task deleted", func(tx *state.ReadTx) bool { return tx.Task(first.GetId()) == nil })
		e.idle()
		if got := e.task(second.GetId()); got == nil || got.GetDesiredState() != stateShutdown {
			t.Errorf("task still running on its node = %v, want it kept, desired SHUTDOWN, until its node stops it", got)
		}
		e.report(second.GetId(), "", stateShutdown)
		e.waitFor("every task deleted", func(tx *state.ReadTx) bool { return len(tx.Tasks()) == 0 })
	})
}

// TestRemovedServiceEndedTasksDeleted: a task that ended while still wanted
// (completed under restart condition none, so desired COMPLETE) is deleted
// with its service at once; nothing would revisit it later (found by
// kernel/e2etest: such a task outlived `shoal service rm`).
func TestRemovedServiceEndedTasksDeleted(t *testing.T) {
	bubble(t, func(e *env) {
		e.createService(replicatedService("job", 1, restartNone))
		e.start()
		e.waitFor("1 task", func(tx *state.ReadTx) bool { return len(tx.Tasks()) == 1 })
		e.idle()
		task := e.slotTask("job", 1)
		e.report(task.GetId(), "n1", stateRunning)
		e.idle()
		e.report(task.GetId(), "", stateComplete)
		e.idle()
		e.removeService("job")
		e.waitFor("the ended task deleted", func(tx *state.ReadTx) bool { return len(tx.Tasks()) == 0 })
	})
}
