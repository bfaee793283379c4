package orchestrator

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// The rolling update tests run on the bubble's clock (see env): a monitor
// period of seconds costs no real time, and "not before the monitor period
// ends" can be checked a moment before it ends.

const (
	image1 = "registry.local:5000/web:1"
	image2 = "registry.local:5000/web:2"
	image3 = "registry.local:5000/web:3"

	// testMonitor is longer than idle's wait, so that a test can see a batch
	// being watched.
	testMonitor = 10 * time.Second

	stopFirst  = objectv1.UpdateOrder_UPDATE_ORDER_STOP_FIRST
	startFirst = objectv1.UpdateOrder_UPDATE_ORDER_START_FIRST
	onPause    = objectv1.FailureAction_FAILURE_ACTION_PAUSE
	onContinue = objectv1.FailureAction_FAILURE_ACTION_CONTINUE
	onRollback = objectv1.FailureAction_FAILURE_ACTION_ROLLBACK
)

// updatingService is a replicated service with an update config.
func updatingService(replicas int64, parallelism uint64, order objectv1.UpdateOrder, action objectv1.FailureAction) *objectv1.Service {
	s := replicatedService("web", replicas, restartAny)
	s.Spec.Update = &objectv1.UpdateConfig{
		Parallelism:   parallelism,
		Monitor:       durationpb.New(testMonitor),
		FailureAction: action,
		Order:         order,
	}
	return s
}

// setImage updates a service's image as the control API does: the spec
// before the change becomes previous_spec.
func (e *env) setImage(id, image string) {
	e.t.Helper()
	e.updateService(id, func(s *objectv1.Service) {
		s.PreviousSpec = proto.Clone(s.GetSpec()).(*objectv1.ServiceSpec)
		s.GetSpec().GetTask().GetContainer().Image = image
	})
}

// runAll does what a worker would with a service's tasks: it reports every
// task told to stop that has not ended as SHUTDOWN, lets the orchestrator
// act on that (a stop-first replacement is held until then), then reports
// every task desired running and not running yet as RUNNING on node n1,
// and returns their IDs.
func (e *env) runAll(serviceID string) []string {
	e.t.Helper()
	e.stopRetired(serviceID)
	e.idle()
	var ids []string
	e.st.View(func(tx *state.ReadTx) {
		for _, t := range desired(tasksOf(tx, serviceID), stateRunning) {
			if t.GetStatus().GetState() < stateRunning {
				ids = append(ids, t.GetId())
			}
		}
	})
	for _, id := range ids {
		nodeID := "n1"
		if e.task(id).GetNodeId() != "" {
			nodeID = "" // a global service's task, on its node
		}
		e.report(id, nodeID, stateRunning)
	}
	return ids
}

// stopRetired reports every placed task of a service that was told to stop
// (desired SHUTDOWN) and has not ended as SHUTDOWN, as its worker would once
// it has stopped it, and returns their IDs.
func (e *env) stopRetired(serviceID string) []string {
	e.t.Helper()
	var ids []string
	e.st.View(func(tx *state.ReadTx) {
		for _, t := range desired(tasksOf(tx, serviceID), stateShutdown) {
			if placed(t) && !ended(t) {
				ids = append(ids, t.GetId())
			}
		}
	})
	for _, id := range ids {
		e.report(id, "", stateShutdown)
	}
	return ids
}

// drive lets the worker run every new task of a service, batch after batch,
// for rounds monitor periods.
func (e *env) drive(serviceID string, rounds int) {
	e.t.Helper()
	for range rounds {
		e.idle()
		e.runAll(serviceID)
		time.Sleep(testMonitor + time.Second)
	}
}

// startUpdating creates a service whose tasks all run on n1.
func (e *env) startUpdating(svc *objectv1.Service) {
	e.t.Helper()
	e.createNode(node("n1", availActive, nodeReady))
	e.createService(svc)
	e.start()
	want := int(svc.GetSpec().GetReplicated().GetReplicas())
	e.waitFor("the service's tasks", func(tx *state.ReadTx) bool { return countDesired(tx, svc.Id, stateRunning) == want })
	e.idle()
	e.runAll(svc.Id)
	e.idle()
}

func (e *env) service(id string) *objectv1.Service {
	var out *objectv1.Service
	e.st.View(func(tx *state.ReadTx) { out = tx.Service(id) })
	return out
}

// images returns, per slot, the images of the tasks desired running or
// held (a stop-first replacement waiting for its old task to stop).
func (e *env) images(serviceID string) map[uint64][]string {
	out := map[uint64][]string{}
	e.st.View(func(tx *state.ReadTx) {
		for _, t := range wantedIn(tasksOf(tx, serviceID)) {
			out[t.GetSlot()] = append(out[t.GetSlot()], t.GetSpec().GetContainer().GetImage())
		}
	})
	return out
}

// withImage returns the tasks desired running or held with image, by
// slot.
func (e *env) withImage(serviceID, image string) map[uint64]*objectv1.Task {
	out := map[uint64]*objectv1.Task{}
	e.st.View(func(tx *state.ReadTx) {
		for _, t := range wantedIn(tasksOf(tx, serviceID)) {
			if t.GetSpec().GetContainer().GetImage() == image {
				out[t.GetSlot()] = t
			}
		}
	})
	return out
}

func (e *env) waitUpdateState(serviceID string, want objectv1.UpdateState) *objectv1.UpdateStatus {
	e.t.Helper()
	e.waitFor("update state "+want.String(), func(tx *state.ReadTx) bool {
		return tx.Service(serviceID).GetUpdateStatus().GetState() == want
	})
	return e.service(serviceID).GetUpdateStatus()
}

// TestRollingUpdateStartFirst: start-first, a slot's new task is created
// beside the old one, and the old one is told to stop only once the new one
// runs.
func TestRollingUpdateStartFirst(t *testing.T) {
	bubble(t, func(e *env) {
		e.startUpdating(updatingService(2, 1, startFirst, onPause))
		old1, old2 := e.slotTask("web", 1), e.slotTask("web", 2)

		e.setImage("web", image2)
		e.waitFor("slot 1's new task", func(tx *state.ReadTx) bool { return len(desired(inSlot(tx, "web", 1), stateRunning)) == 2 })
		e.idle()
		st := e.service("web").GetUpdateStatus()
		if st.GetState() != updating || st.GetUpdated() != 1 || st.GetSpecVersion() != 2 || st.GetStartedAt() == nil {
			t.Errorf("update status after the first batch = %v, want UPDATING, spec_version 2, 1 updated, started_at set", st)
		}
		repl := e.withImage("web", image2)[1]
		if repl == nil || repl.GetStatus().GetState() != statePending {
			t.Fatalf("slot 1's new task = %v, want a pending task with %s", repl, image2)
		}

		// Placed and starting: the old task still runs.
		for _, s := range []objectv1.TaskState{stateAssigned, objectv1.TaskState_TASK_STATE_STARTING} {
			e.report(repl.GetId(), "n1", s)
			e.idle()
			if got := e.task(old1.GetId()).GetDesiredState(); got != stateRunning {
				t.Fatalf("old task's desired_state with its replacement %v = %v, want %v", s, got, stateRunning)
			}
		}
		if got := e.images("web")[2]; len(got) != 1 || got[0] != image1 {
			t.Errorf("slot 2 during slot 1's update = %q, want only %s: parallelism is 1", got, image1)
		}

		// The new task runs: now the old one is told to stop.
		e.report(repl.GetId(), "n1", stateRunning)
		e.waitFor("the old task told to stop", func(tx *state.ReadTx) bool {
			return tx.Task(old1.GetId()).GetDesiredState() == stateShutdown
		})
		if got := e.task(repl.GetId()).GetStatus().GetState(); got != stateRunning {
			t.Errorf("replacement when the old task was told to stop = %v, want %v", got, stateRunning)
		}
		// Slot 2 waits for the monitor period of slot 1's new task.
		e.idle()
		if got := e.task(old2.GetId()).GetDesiredState(); got != stateRunning {
			t.Errorf("slot 2's old task during slot 1's monitor period: desired_state %v, want %v", got, stateRunning)
		}
		if n := len(e.withImage("web", image2)); n != 1 {
			t.Errorf("tasks with the new image during slot 1's monitor period = %d, want 1", n)
		}
		e.waitFor("slot 2's new task", func(tx *state.ReadTx) bool { return len(desired(inSlot(tx, "web", 2), stateRunning)) == 2 })
		e.runAll("web")
		e.waitFor("slot 2's old task told to stop", func(tx *state.ReadTx) bool {
			return tx.Task(old2.GetId()).GetDesiredState() == stateShutdown
		})
		st = e.waitUpdateState("web", updateCompleted)
		if st.GetCompletedAt() == nil || st.GetUpdated() != 2 || st.GetFailed() != 0 || st.GetMessage() != "update completed" {
			t.Errorf("update status at the end = %v, want COMPLETED with completed_at, 2 updated, 0 failed", st)
		}
		for slot, imgs := range e.images("web") {
			if len(imgs) != 1 || imgs[0] != image2 {
				t.Errorf("slot %d at the end runs %q, want only %s", slot, imgs, image2)
			}
		}
	})
}

// startFirstReplacement starts a start-first update of a two-replica
// service "web" to image2, one task at a time, and returns slot 1's old
// task and its replacement once the replacement is created.
func (e *env) startFirstReplacement() (old1, repl *objectv1.Task) {
	e.startUpdating(updatingService(2, 1, startFirst, onPause))
	old1 = e.slotTask("web", 1)
	e.setImage("web", image2)
	e.waitFor("slot 1's new task", func(tx *state.ReadTx) bool { return len(e.withImage("web", image2)) == 1 })
	e.idle()
	return old1, e.withImage("web", image2)[1]
}

// TestRollingUpdateStartFirstFailure: a start-first replacement that fails
// leaves the old task running, and pauses the update.
func TestRollingUpdateStartFirstFailure(t *testing.T) {
	bubble(t, func(e *env) {
		old1, repl := e.startFirstReplacement()
		e.report(repl.GetId(), "n1", stateRejected)
		st := e.waitUpdateState("web", updatePaused)
		if want := "update paused: task " + repl.GetId() + " was rejected"; st.GetMessage() != want {
			t.Errorf("message = %q, want %q", st.GetMessage(), want)
		}
		time.Sleep(10 * testMonitor)
		e.idle()
		if got := e.images("web"); len(got[1]) != 1 || got[1][0] != image1 || len(got[2]) != 1 || got[2][0] != image1 {
			t.Errorf("images by slot after the failed replacement = %v, want the old image alone in both slots", got)
		}
		if got := e.task(old1.GetId()).GetDesiredState(); got != stateRunning {
			t.Errorf("old task beside the failed replacement: desired_state %v, want %v", got, stateRunning)
		}
		if got := e.task(repl.GetId()).GetDesiredState(); got != stateShutdown {
			t.Errorf("failed replacement: desired_state %v, want %v (history)", got, stateShutdown)
		}
	})
}

// TestRollingUpdateMonitorAndDelay: the next batch starts delay after the
// batch's new tasks have run for monitor, not before.
func TestRollingUpdateMonitorAndDelay(t *testing.T) {
	const delay = 20 * time.Second
	bubble(t, func(e *env) {
		svc := updatingService(2, 1, stopFirst, onPause)
		svc.Spec.Update.Delay = durationpb.New(delay)
		e.startUpdating(svc)
		e.setImage("web", image2)
		e.waitFor("slot 1 replaced", func(tx *state.ReadTx) bool { return len(e.withImage("web", image2)) == 1 })
		e.idle()
		e.runAll("web")
		up := time.Now()
		next := up.Add(testMonitor + delay)
		time.Sleep(time.Until(next) - time.Second)
		synctest.Wait()
		if n := len(e.withImage("web", image2)); n != 1 {
			t.Fatalf("tasks with the new image 1s before monitor + delay = %d, want 1", n)
		}
		e.waitFor("slot 2 replaced", func(tx *state.ReadTx) bool { return len(e.withImage("web", image2)) == 2 })
		if now := time.Now(); now.Before(next) {
			t.Errorf("slot 2 replaced %v after slot 1's task ran, want at least monitor + delay = %v", now.Sub(up), testMonitor+delay)
		}
	})
}

// TestRollingUpdatePausesOnFailure: a new task that fails within the monitor
// period pauses the update (the default action); a new leader keeps it
// paused; updating the service again resumes it.
func TestRollingUpdatePausesOnFailure(t *testing.T) {
	bubble(t, func(e *env) {
		e.startUpdating(updatingService(3, 1, stopFirst, onPause))
		old2, old3 := e.slotTask("web", 2), e.slotTask("web", 3)
		e.setImage("web", image2)
		e.waitFor("slot 1 replaced", func(tx *state.ReadTx) bool { return len(e.withImage("web", image2)) == 1 })
		e.idle()
		e.runAll("web")
		e.idle() // within the monitor period
		failing := e.withImage("web", image2)[1]
		e.reportStatus(failing.GetId(), "", &objectv1.TaskStatus{State: stateFailed, ExitCode: 1})

		st := e.waitUpdateState("web", updatePaused)
		want := "update paused: task " + failing.GetId() + " failed: exit code 1"
		if st.GetMessage() != want {
			t.Errorf("paused update message = %q, want %q", st.GetMessage(), want)
		}
		// Long after any monitor period, slots 2 and 3 still run the old
		// tasks; slot 1's task is restarted by its restart policy.
		check := func(when string) {
			t.Helper()
			time.Sleep(10 * testMonitor)
			e.idle()
			for _, old := range []*objectv1.Task{old2, old3} {
				if got := e.task(old.GetId()).GetDesiredState(); got != stateRunning {
					t.Errorf("%s: slot %d's old task desired_state = %v, want %v", when, old.GetSlot(), got, stateRunning)
				}
			}
			if got := e.service("web").GetUpdateStatus(); !proto.Equal(got, st) {
				t.Errorf("%s: update status = %v, want unchanged %v", when, got, st)
			}
		}
		check("paused")
		e.runAll("web") // the restarted slot 1 task runs: nothing resumes
		check("paused, slot 1 restarted")

		// A new leader.
		e.stopRun()
		e.start()
		check("paused, after a leader change")

		// Updating the service again resumes: a new update of the new spec.
		e.setImage("web", image3)
		e.waitFor("slot 1 on image 3", func(tx *state.ReadTx) bool { return len(e.withImage("web", image3)) == 1 })
		st = e.service("web").GetUpdateStatus()
		if st.GetState() != updating || st.GetSpecVersion() != 3 || st.GetFailed() != 0 || st.GetUpdated() != 1 {
			t.Errorf("update status after updating again = %v, want UPDATING for spec_version 3, counts reset", st)
		}
		e.drive("web", 3)
		e.waitUpdateState("web", updateCompleted)
		if n := len(e.withImage("web", image3)); n != 3 {
			t.Errorf("tasks on image 3 after the resumed update = %d, want 3", n)
		}
	})
}

// TestRollingUpdateFailureRatio: failures up to max_failure_ratio of the
// tasks updated so far are tolerated; beyond it, the update pauses.
func TestRollingUpdateFailureRatio(t *testing.T) {
	bubble(t, func(e *env) {
		svc := updatingService(4, 2, stopFirst, onPause)
		svc.Spec.Update.MaxFailureRatio = 0.5
		e.startUpdating(svc)
		e.setImage("web", image2)
		e.waitFor("batch 1", func(tx *state.ReadTx) bool { return len(e.withImage("web", image2)) == 2 })
		e.idle()
		e.runAll("web")
		e.idle()
		// 1 failure of 2 updated: 0.5 is not more than 0.5.
		e.reportStatus(e.withImage("web", image2)[1].GetId(), "", &objectv1.TaskStatus{State: stateRejected, Err: "no such image"})
		e.idle()
		e.runAll("web") // slot 1's restart
		e.waitFor("batch 2", func(tx *state.ReadTx) bool { return len(e.withImage("web", image2)) == 4 })
		st := e.service("web").GetUpdateStatus()
		if st.GetState() != updating || st.GetFailed() != 1 || st.GetUpdated() != 4 {
			t.Errorf("update status in batch 2 = %v, want UPDATING, 1 failed (batch 1's) of 4 updated", st)
		}
		e.idle()
		e.runAll("web")
		e.idle()
		// 3 failures of 4 updated: over the ratio.
		for _, slot := range []uint64{3, 4} {
			e.reportStatus(e.withImage("web", image2)[slot].GetId(), "", &objectv1.TaskStatus{State: stateFailed, Err: "oom"})
		}
		st = e.waitUpdateState("web", updatePaused)
		if st.GetUpdated() != 4 || !strings.HasPrefix(st.GetMessage(), "update paused: task ") || !strings.HasSuffix(st.GetMessage(), " failed: oom") {
			t.Errorf("update status = %v, want PAUSED, 4 updated, message naming the failed task", st)
		}
	})
}

// TestRollingUpdateContinue: with failure action CONTINUE, failures do not
// stop the update.
func TestRollingUpdateContinue(t *testing.T) {
	bubble(t, func(e *env) {
		e.startUpdating(updatingService(3, 1, stopFirst, onContinue))
		e.setImage("web", image2)
		e.waitFor("slot 1 replaced", func(tx *state.ReadTx) bool { return len(e.withImage("web", image2)) == 1 })
		e.idle()
		e.runAll("web")
		e.idle()
		e.reportStatus(e.withImage("web", image2)[1].GetId(), "", &objectv1.TaskStatus{State: stateFailed, ExitCode: 2})
		e.drive("web", 4)
		st := e.waitUpdateState("web", updateCompleted)
		if st.GetFailed() != 1 || st.GetUpdated() != 3 || st.GetMessage() != "update completed (1 of 3 new tasks failed)" {
			t.Errorf("update status = %v, want COMPLETED with 1 of 3 failed", st)
		}
		for slot, imgs := range e.images("web") {
			if len(imgs) != 1 || imgs[0] != image2 {
				t.Errorf("slot %d at the end runs %q, want only %s", slot, imgs, image2)
			}
		}
	})
}

// TestRollingUpdateRollback: with failure action ROLLBACK, a failure writes
// the service back to its previous spec, which is rolled out the same way.
func TestRollingUpdateRollback(t *testing.T) {
	bubble(t, func(e *env) {
		e.startUpdating(updatingService(3, 2, stopFirst, onRollback))
		before := e.service("web")
		e.setImage("web", image2)
		e.waitFor("batch 1", func(tx *state.ReadTx) bool { return len(e.withImage("web", image2)) == 2 })
		e.idle()
		e.runAll("web")
		e.idle()
		failing := e.withImage("web", image2)[1]
		e.reportStatus(failing.GetId(), "", &objectv1.TaskStatus{State: stateFailed, ExitCode: 1})

		st := e.waitUpdateState("web", rollbackStarted)
		svc := e.service("web")
		if !proto.Equal(svc.GetSpec(), before.GetSpec()) {
			t.Errorf("spec after the rollback = %v, want the previous one %v", svc.GetSpec(), before.GetSpec())
		}
		if svc.GetSpecVersion() != 3 || svc.GetPreviousSpec() != nil {
			t.Errorf("service after the rollback: spec_version %d, previous_spec %v; want 3 and none", svc.GetSpecVersion(), svc.GetPreviousSpec())
		}
		if want := "update rolled back: task " + failing.GetId() + " failed: exit code 1"; st.GetMessage() != want || st.GetSpecVersion() != 3 {
			t.Errorf("rollback status = %v, want spec_version 3, message %q", st, want)
		}
		// Slot 2 still runs image 2: the rollback replaces it.
		e.idle()
		if got := e.images("web")[2]; len(got) != 1 || got[0] != image1 {
			t.Errorf("slot 2 in the rollback = %q, want it replaced by %s", got, image1)
		}
		e.drive("web", 2)
		st = e.waitUpdateState("web", rollbackCompleted)
		if want := "update rolled back: task " + failing.GetId() + " failed: exit code 1"; st.GetMessage() != want || st.GetCompletedAt() == nil {
			t.Errorf("status at the end = %v, want ROLLBACK_COMPLETED, %q: why it rolled back", st, want)
		}
		for slot, imgs := range e.images("web") {
			if len(imgs) != 1 || imgs[0] != image1 {
				t.Errorf("slot %d after the rollback runs %q, want only %s", slot, imgs, image1)
			}
		}
	})
}

// TestRollingUpdateRollbackImpossible: without a previous spec, ROLLBACK
// pauses and says why.
func TestRollingUpdateRollbackImpossible(t *testing.T) {
	bubble(t, func(e *env) {
		e.startUpdating(updatingService(2, 1, stopFirst, onRollback))
		e.updateService("web", func(s *objectv1.Service) { s.GetSpec().GetTask().GetContainer().Image = image2 })
		e.waitFor("slot 1 replaced", func(tx *state.ReadTx) bool { return len(e.withImage("web", image2)) == 1 })
		e.idle()
		e.runAll("web")
		e.idle()
		e.report(e.withImage("web", image2)[1].GetId(), "", stateFailed)
		st := e.waitUpdateState("web", updatePaused)
		if !strings.HasSuffix(st.GetMessage(), "(no previous spec to roll back to)") {
			t.Errorf("message = %q, want it to say there is no previous spec", st.GetMessage())
		}
		if got := e.service("web").GetSpec().GetTask().GetContainer().GetImage(); got != image2 {
			t.Errorf("image after an impossible rollback = %s, want %s kept", got, image2)
		}
	})
}

// TestRollingUpdateContinuesAfterLeaderChange: a new orchestrator picks the
// update up in the middle of a batch's monitor period, from the store alone.
func TestRollingUpdateContinuesAfterLeaderChange(t *testing.T) {
	bubble(t, func(e *env) {
		e.startUpdating(updatingService(3, 1, startFirst, onPause))
		e.setImage("web", image2)
		e.waitFor("slot 1's new task", func(tx *state.ReadTx) bool { return len(e.withImage("web", image2)) == 1 })
		e.idle()
		e.runAll("web")
		e.idle() // slot 1's old task is told to stop; the monitor period runs
		e.stopRun()
		before := e.service("web").GetUpdateStatus()

		e.start()
		e.idle()
		if n := len(e.withImage("web", image2)); n != 1 {
			t.Errorf("a new leader within the monitor period has %d tasks on the new image, want 1", n)
		}
		e.drive("web", 3)
		st := e.waitUpdateState("web", updateCompleted)
		if !proto.Equal(st.GetStartedAt(), before.GetStartedAt()) || st.GetUpdated() != 3 {
			t.Errorf("status after the leader change = %v, want the same update (started_at %v) completed with 3 updated", st, before.GetStartedAt())
		}
	})
}

// TestRollingUpdateGlobalStartFirst: a global service's task on each node is
// replaced start-first too.
func TestRollingUpdateGlobalStartFirst(t *testing.T) {
	bubble(t, func(e *env) {
		e.createNode(node("a", availActive, nodeReady))
		e.createNode(node("b", availActive, nodeReady))
		svc := globalService("agent", restartAny)
		svc.Spec.Update = &objectv1.UpdateConfig{Parallelism: 1, Order: startFirst}
		e.createService(svc)
		e.start()
		e.waitFor("2 tasks", func(tx *state.ReadTx) bool { return countDesired(tx, "agent", stateRunning) == 2 })
		e.runAll("agent")
		e.idle()
		oldA, oldB := e.nodeTask("agent", "a"), e.nodeTask("agent", "b")
		e.updateService("agent", func(s *objectv1.Service) { s.GetSpec().GetTask().GetContainer().Image = image2 })
		e.waitFor("a's new task", func(tx *state.ReadTx) bool { return len(desired(onNode(tx, "agent", "a"), stateRunning)) == 2 })
		e.idle()
		if got := e.task(oldA.GetId()).GetDesiredState(); got != stateRunning {
			t.Errorf("a's old task before its replacement runs: desired %v, want %v", got, stateRunning)
		}
		e.runAll("agent")
		e.waitFor("both replaced", func(tx *state.ReadTx) bool {
			return tx.Task(oldA.GetId()).GetDesiredState() == stateShutdown && len(desired(onNode(tx, "agent", "b"), stateRunning)) == 2
		})
		e.runAll("agent")
		e.waitFor("b's old task stopped", func(tx *state.ReadTx) bool { return tx.Task(oldB.GetId()).GetDesiredState() == stateShutdown })
		e.waitUpdateState("agent", updateCompleted)
	})
}

// TestNodeRemovedReplacesItsTasks: the tasks of a node removed while up
// (node rm --force) are orphaned and replaced, in one write.
func TestNodeRemovedReplacesItsTasks(t *testing.T) {
	bubble(t, func(e *env) {
		e.createNode(node("n1", availActive, nodeReady))
		e.createNode(node("n2", availActive, nodeReady))
		e.createService(replicatedService("web", 3, restartAny))
		e.createService(globalService("agent", restartAny))
		e.start()
		e.waitFor("5 tasks", func(tx *state.ReadTx) bool { return len(tx.Tasks()) == 5 })
		e.idle()
		for slot := uint64(1); slot <= 3; slot++ {
			e.report(e.slotTask("web", slot).GetId(), "n1", stateRunning)
		}
		onN1 := e.nodeTask("agent", "n1")
		e.report(onN1.GetId(), "", stateRunning)
		e.report(e.nodeTask("agent", "n2").GetId(), "", stateRunning)
		e.idle()
		var lost []string
		e.st.View(func(tx *state.ReadTx) {
			for _, t := range tx.TasksByNode("n1") {
				lost = append(lost, t.GetId())
			}
		})
		before, _ := e.raft.counts()

		e.removeNode("n1")
		e.waitFor("web's 3 replacements", func(tx *state.ReadTx) bool {
			n := 0
			for _, t := range desired(tx.TasksByService("web"), stateRunning) {
				if t.GetNodeId() == "" {
					n++
				}
			}
			return n == 3
		})
		e.idle()
		if after, _ := e.raft.counts(); after-before != 1 {
			t.Errorf("replacing a removed node's tasks took %d Update calls, want 1", after-before)
		}
		for _, id := range lost {
			got := e.task(id)
			if got.GetDesiredState() != stateShutdown || got.GetStatus().GetState() != objectv1.TaskState_TASK_STATE_ORPHANED ||
				got.GetStatus().GetMessage() != "node removed: task replaced" {
				t.Errorf("task %s of the removed node = desired %v, status %v; want SHUTDOWN, ORPHANED, \"node removed: task replaced\"",
					id, got.GetDesiredState(), got.GetStatus())
			}
		}
		if got := runningNodes(e, "agent"); len(got) != 1 || got[0] != "n2" {
			t.Errorf("global service on nodes %q after n1's removal, want only n2", got)
		}
		// A new leader finds nothing more to do.
		_, commits := e.raft.counts()
		e.stopRun()
		e.start()
		e.idle()
		if _, got := e.raft.counts(); got != commits {
			t.Errorf("a new orchestrator after the removal committed %d writes, want 0", got-commits)
		}
	})
}

// TestRollingUpdateRollbackFails: a task of the rollback that fails pauses
// the rollback: a rollback is not rolled back in turn.
func TestRollingUpdateRollbackFails(t *testing.T) {
	bubble(t, func(e *env) {
		e.startUpdating(updatingService(3, 2, stopFirst, onRollback))
		e.setImage("web", image2)
		e.waitFor("batch 1", func(tx *state.ReadTx) bool { return len(e.withImage("web", image2)) == 2 })
		e.idle()
		e.runAll("web")
		e.idle()
		e.report(e.withImage("web", image2)[1].GetId(), "", stateFailed)
		e.waitUpdateState("web", rollbackStarted)
		e.waitFor("slot 2 rolled back", func(tx *state.ReadTx) bool { return len(e.withImage("web", image2)) == 0 })
		e.idle()
		back := e.withImage("web", image1)[2]
		e.report(back.GetId(), "n1", stateRunning)
		e.idle()
		e.reportStatus(back.GetId(), "", &objectv1.TaskStatus{State: stateFailed, ExitCode: 137})
		st := e.waitUpdateState("web", rollbackPaused)
		if want := "rollback paused: task " + back.GetId() + " failed: exit code 137"; st.GetMessage() != want {
			t.Errorf("message = %q, want %q", st.GetMessage(), want)
		}
		if got := e.service("web").GetSpec().GetTask().GetContainer().GetImage(); got != image1 {
			t.Errorf("image after the failed rollback = %s, want %s: a rollback is not rolled back", got, image1)
		}
	})
}
