package orchestrator

import (
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// publishing is a stop-first service of replicas tasks, one slot at a time,
// publishing a port: its new task cannot be prepared on a node while the
// old one holds the port.
func publishing(replicas int64) *objectv1.Service {
	svc := updatingService(replicas, 1, stopFirst, onPause)
	svc.Spec.Endpoint = &objectv1.EndpointSpec{Ports: []*objectv1.PortConfig{{TargetPort: 8080, PublishedPort: 8081}}}
	return svc
}

// checkHeld requires slot's new task to be held for old: desired READY,
// pending on no node, saying what it waits for.
func checkHeld(t *testing.T, e *env, slot uint64, old *objectv1.Task) *objectv1.Task {
	t.Helper()
	h := e.heldTask("web", slot)
	if h.GetNodeId() != "" || h.GetStatus().GetState() != statePending || h.GetStatus().GetMessage() != "waiting for task "+old.GetId()+" to stop" {
		t.Errorf("slot %d's new task = %v, want pending on no node, waiting for task %s to stop", slot, h, old.GetId())
	}
	if got := e.task(old.GetId()).GetDesiredState(); got != stateShutdown {
		t.Errorf("slot %d's old task beside its held replacement: desired_state %v, want %v", slot, got, stateShutdown)
	}
	var running int
	e.st.View(func(tx *state.ReadTx) { running = len(desired(inSlot(tx, "web", slot), stateRunning)) })
	if running != 0 {
		t.Errorf("slot %d has %d tasks desired running while its old task stops, want 0", slot, running)
	}
	return h
}

// checkReleased requires the held task h to be desired RUNNING now, still
// pending for placement.
func checkReleased(t *testing.T, e *env, h *objectv1.Task) {
	t.Helper()
	got := e.task(h.GetId())
	if got.GetDesiredState() != stateRunning || got.GetStatus().GetState() != statePending ||
		got.GetStatus().GetMessage() != PendingMessage || got.GetNodeId() != "" {
		t.Errorf("released task = %v, want desired RUNNING, pending on no node, %q", got, PendingMessage)
	}
}

// TestStopFirstHoldsReplacement: stop-first, a slot's new task is created
// in the write that tells the old one to stop, but held (desired READY)
// until the old one's node reports it ended, however long that takes
// within the grace period and the hold timeout: then, and only then, it is
// desired RUNNING. A new leader keeps holding it without writing anything.
// The batch is not over while its task is held: the next slot waits.
func TestStopFirstHoldsReplacement(t *testing.T) {
	// However the old task ends, its replacement goes.
	for _, end := range []objectv1.TaskState{stateShutdown, stateFailed, stateComplete} {
		t.Run(end.String(), func(t *testing.T) {
			bubble(t, func(e *env) {
				e.startUpdating(publishing(2))
				old1, old2 := e.slotTask("web", 1), e.slotTask("web", 2)
				_, before := e.raft.counts()
				e.setImage("web", image2)
				e.waitFor("slot 1's new task", func(tx *state.ReadTx) bool { return len(desired(inSlot(tx, "web", 1), stateReady)) == 1 })
				e.idle()
				if _, after := e.raft.counts(); after-before != 1 {
					t.Errorf("starting the batch took %d writes, want 1 (old task told to stop, new one held)", after-before)
				}
				h := checkHeld(t, e, 1, old1)
				if st := e.service("web").GetUpdateStatus(); st.GetState() != updating || st.GetUpdated() != 1 {
					t.Errorf("update status with slot 1 held = %v, want UPDATING, 1 updated", st)
				}

				// The old task takes its time to stop (within the hold
				// timeout); a new leader meanwhile changes nothing.
				time.Sleep(30 * time.Second)
				e.idle()
				_, commits := e.raft.counts()
				e.stopRun()
				e.start()
				e.idle()
				if _, got := e.raft.counts(); got != commits {
					t.Errorf("a new leader while slot 1 is held committed %d writes, want 0", got-commits)
				}
				checkHeld(t, e, 1, old1)
				if got := e.task(old2.GetId()).GetDesiredState(); got != stateRunning {
					t.Errorf("slot 2's old task while slot 1 is held: desired_state %v, want %v", got, stateRunning)
				}

				// Its node reports it ended: the new task is released.
				e.report(old1.GetId(), "", end)
				e.waitFor("slot 1's new task released", func(tx *state.ReadTx) bool {
					return tx.Task(h.GetId()).GetDesiredState() == stateRunning
				})
				checkReleased(t, e, h)
				if got := e.service("web").GetUpdateStatus(); got.GetState() != updating || got.GetFailed() != 0 {
					t.Errorf("update status once slot 1's old task ended %v = %v, want UPDATING without failures", end, got)
				}

				// Slot 2 the same way, once slot 1's new task has run
				// for the monitor period.
				e.report(h.GetId(), "n1", stateRunning)
				time.Sleep(testMonitor + time.Second)
				e.waitFor("slot 2's new task", func(tx *state.ReadTx) bool { return len(desired(inSlot(tx, "web", 2), stateReady)) == 1 })
				e.idle()
				h2 := checkHeld(t, e, 2, old2)
				e.report(old2.GetId(), "", stateShutdown)
				e.waitFor("slot 2's new task released", func(tx *state.ReadTx) bool {
					return tx.Task(h2.GetId()).GetDesiredState() == stateRunning
				})
				e.report(h2.GetId(), "n1", stateRunning)
				time.Sleep(testMonitor + time.Second)
				e.waitUpdateState("web", updateCompleted)
			})
		})
	}
}

// TestStopFirstHoldEndsWithTheNode: a held task does not wait for a task
// on a node that is lost (down, or removed): that node will not report.
func TestStopFirstHoldEndsWithTheNode(t *testing.T) {
	for _, tt := range []struct {
		name string
		lose func(e *env)
	}{
		{"down", func(e *env) { e.updateNode("n1", func(n *objectv1.Node) { n.Status.State = nodeDown }) }},
		{"removed", func(e *env) { e.removeNode("n1") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bubble(t, func(e *env) {
				e.startUpdating(publishing(1))
				old := e.slotTask("web", 1)
				e.setImage("web", image2)
				e.waitFor("the new task", func(tx *state.ReadTx) bool { return len(desired(inSlot(tx, "web", 1), stateReady)) == 1 })
				e.idle()
				h := checkHeld(t, e, 1, old)

				tt.lose(e)
				e.waitFor("the new task released", func(tx *state.ReadTx) bool {
					return tx.Task(h.GetId()).GetDesiredState() == stateRunning
				})
				checkReleased(t, e, h)
				e.idle()
				if got := e.task(old.GetId()); got.GetDesiredState() != stateShutdown || ended(got) {
					t.Errorf("old task on the lost node = %v, want left as it was: desired SHUTDOWN, its state unknown", got)
				}
				var n int
				e.st.View(func(tx *state.ReadTx) { n = len(wantedIn(tx.TasksByService("web"))) })
				if n != 1 {
					t.Errorf("tasks desired running or held = %d, want 1", n)
				}
			})
		})
	}
}

// TestStopFirstHoldTimesOut: a node that stays up but never reports the
// old task's end holds the new task for the old task's stop grace period
// and holdTimeout, not longer.
func TestStopFirstHoldTimesOut(t *testing.T) {
	const grace = 30 * time.Second
	bubble(t, func(e *env) {
		svc := publishing(1)
		svc.Spec.Task.Container.StopGracePeriod = durationpb.New(grace)
		e.startUpdating(svc)
		old := e.slotTask("web", 1)
		e.setImage("web", image2)
		e.waitFor("the new task", func(tx *state.ReadTx) bool { return len(desired(inSlot(tx, "web", 1), stateReady)) == 1 })
		h := checkHeld(t, e, 1, old)
		created := h.GetMeta().GetCreatedAt().AsTime()
		due := created.Add(grace + holdTimeout)

		// A second before: still held.
		time.Sleep(time.Until(due) - time.Second)
		synctest.Wait()
		checkHeld(t, e, 1, old)
		e.waitFor("the new task released", func(tx *state.ReadTx) bool {
			return tx.Task(h.GetId()).GetDesiredState() == stateRunning
		})
		if released := e.task(h.GetId()).GetStatus().GetTimestamp().AsTime(); released.Before(due) {
			t.Errorf("held task released %v after its creation, want at least grace + holdTimeout = %v", released.Sub(created), grace+holdTimeout)
		}
		checkReleased(t, e, h)
	})
}

// TestStartFirstNotHeld: start-first, the new task is desired RUNNING from
// the start, beside the old task, which still runs.
func TestStartFirstNotHeld(t *testing.T) {
	bubble(t, func(e *env) {
		svc := publishing(1)
		svc.Spec.Update.Order = startFirst
		e.startUpdating(svc)
		old := e.slotTask("web", 1)
		e.setImage("web", image2)
		e.waitFor("the new task", func(tx *state.ReadTx) bool { return len(desired(inSlot(tx, "web", 1), stateRunning)) == 2 })
		e.idle()
		var held int
		e.st.View(func(tx *state.ReadTx) { held = countDesired(tx, "web", stateReady) })
		if held != 0 {
			t.Errorf("held tasks in a start-first update = %d, want 0", held)
		}
		if got := e.task(old.GetId()).GetDesiredState(); got != stateRunning {
			t.Errorf("old task beside its start-first replacement: desired_state %v, want %v", got, stateRunning)
		}
	})
}

// TestRestartNotHeld: a task that ended is replaced as its restart policy
// says, desired RUNNING at once, even during a stop-first update: there is
// nothing to wait for.
func TestRestartNotHeld(t *testing.T) {
	bubble(t, func(e *env) {
		e.startUpdating(publishing(1))
		old := e.slotTask("web", 1)
		e.reportStatus(old.GetId(), "", &objectv1.TaskStatus{State: stateFailed, ExitCode: 1})
		e.waitFor("the restarted task", func(tx *state.ReadTx) bool {
			ts := desired(inSlot(tx, "web", 1), stateRunning)
			return len(ts) == 1 && ts[0].GetId() != old.GetId()
		})
		e.idle()
		var held int
		e.st.View(func(tx *state.ReadTx) { held = countDesired(tx, "web", stateReady) })
		if held != 0 {
			t.Errorf("held tasks after a restart = %d, want 0", held)
		}
	})
}

// TestStopFirstHoldsGlobalReplacement: a global service's new task on a
// node is held the same way, on its node from the start.
func TestStopFirstHoldsGlobalReplacement(t *testing.T) {
	bubble(t, func(e *env) {
		e.createNode(node("a", availActive, nodeReady))
		svc := globalService("agent", restartAny)
		svc.Spec.Update = &objectv1.UpdateConfig{Parallelism: 1}
		e.createService(svc)
		e.start()
		e.waitFor("a's task", func(tx *state.ReadTx) bool { return countDesired(tx, "agent", stateRunning) == 1 })
		e.runAll("agent")
		e.idle()
		old := e.nodeTask("agent", "a")
		e.updateService("agent", func(s *objectv1.Service) { s.GetSpec().GetTask().GetContainer().Image = image2 })
		e.waitFor("a's new task", func(tx *state.ReadTx) bool { return countDesired(tx, "agent", stateReady) == 1 })
		e.idle()
		var h *objectv1.Task
		e.st.View(func(tx *state.ReadTx) { h = desired(tx.TasksByService("agent"), stateReady)[0] })
		if h.GetNodeId() != "a" || h.GetStatus().GetState() != statePending || e.task(old.GetId()).GetDesiredState() != stateShutdown {
			t.Fatalf("a's new task = %v beside the old one desired %v, want it held on a, pending, the old one told to stop",
				h, e.task(old.GetId()).GetDesiredState())
		}
		e.report(old.GetId(), "", stateShutdown)
		e.waitFor("a's new task released", func(tx *state.ReadTx) bool { return tx.Task(h.GetId()).GetDesiredState() == stateRunning })
		e.runAll("agent")
		e.waitUpdateState("agent", updateCompleted)
	})
}

// TestHeldTaskOfRemovedService: a removed service's held task goes with
// it.
func TestHeldTaskOfRemovedService(t *testing.T) {
	bubble(t, func(e *env) {
		e.startUpdating(publishing(1))
		old := e.slotTask("web", 1)
		e.setImage("web", image2)
		e.waitFor("the new task", func(tx *state.ReadTx) bool { return len(desired(inSlot(tx, "web", 1), stateReady)) == 1 })
		h := checkHeld(t, e, 1, old)
		e.removeService("web")
		e.waitFor("the held task deleted", func(tx *state.ReadTx) bool { return tx.Task(h.GetId()) == nil })
	})
}
