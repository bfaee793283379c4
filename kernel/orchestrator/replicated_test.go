package orchestrator

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// checkNewTask checks what the orchestrator writes into a task it creates.
func checkNewTask(t *testing.T, task *objectv1.Task, svc *objectv1.Service, slot uint64, nodeID string) {
	t.Helper()
	if task.GetId() == "" {
		t.Errorf("task in slot %d has no ID", slot)
	}
	if got := task.GetServiceId(); got != svc.GetId() {
		t.Errorf("task %s service_id = %q, want %q", task.GetId(), got, svc.GetId())
	}
	if got := task.GetSlot(); got != slot {
		t.Errorf("task %s slot = %d, want %d", task.GetId(), got, slot)
	}
	if got := task.GetNodeId(); got != nodeID {
		t.Errorf("task %s node_id = %q, want %q", task.GetId(), got, nodeID)
	}
	if got := task.GetDesiredState(); got != stateRunning {
		t.Errorf("task %s desired_state = %v, want %v", task.GetId(), got, stateRunning)
	}
	if got := task.GetStatus().GetState(); got != statePending {
		t.Errorf("task %s status.state = %v, want %v", task.GetId(), got, statePending)
	}
	if got := task.GetStatus().GetMessage(); got != PendingMessage {
		t.Errorf("task %s status.message = %q, want %q", task.GetId(), got, PendingMessage)
	}
	if task.GetStatus().GetTimestamp() == nil {
		t.Errorf("task %s status.timestamp is unset", task.GetId())
	}
	if got, want := task.GetSpec(), svc.GetSpec().GetTask(); !proto.Equal(got, want) {
		t.Errorf("task %s spec = %v, want %v", task.GetId(), got, want)
	}
	if got, want := task.GetSpecVersion(), svc.GetSpecVersion(); got != want {
		t.Errorf("task %s spec_version = %d, want %d", task.GetId(), got, want)
	}
	if got, want := task.GetServiceAnnotations(), svc.GetSpec().GetAnnotations(); !proto.Equal(got, want) {
		t.Errorf("task %s service_annotations = %v, want %v", task.GetId(), got, want)
	}
}

func TestReplicatedOneTaskPerSlot(t *testing.T) {
	for _, replicas := range []int64{0, 1, 3, 25} {
		t.Run(fmt.Sprint(replicas), func(t *testing.T) {
			bubble(t, func(e *env) {
				e.start()
				svc := replicatedService("web", replicas, restartAny)
				e.createService(proto.Clone(svc).(*objectv1.Service))
				e.waitFor(fmt.Sprintf("%d tasks", replicas), func(tx *state.ReadTx) bool {
					return len(tx.TasksByService("web")) >= int(replicas)
				})
				e.idle()

				var ts []*objectv1.Task
				e.st.View(func(tx *state.ReadTx) { ts = tasksOf(tx, "web") })
				if len(ts) != int(replicas) {
					t.Fatalf("service with %d replicas has %d tasks, want %d", replicas, len(ts), replicas)
				}
				for i, task := range ts {
					checkNewTask(t, task, svc, uint64(i+1), "")
				}
			})
		})
	}
}

func TestReplicatedScaleUpIsBatched(t *testing.T) {
	const replicas = 10000
	bubble(t, func(e *env) {
		e.createService(replicatedService("web", 1, restartAny))
		e.start()
		e.waitFor("the first task", func(tx *state.ReadTx) bool { return len(tx.TasksByService("web")) == 1 })
		e.idle()
		before, _ := e.raft.counts()

		e.updateService("web", func(s *objectv1.Service) { s.GetSpec().GetReplicated().Replicas = replicas })
		e.waitFor(fmt.Sprintf("%d tasks", replicas), func(tx *state.ReadTx) bool {
			return countDesired(tx, "web", stateRunning) == replicas
		})
		e.idle()

		// Scaling up writes every new task of the pass in one Update: a
		// handful of Raft entries, not one per task.
		if after, _ := e.raft.counts(); after-before > 3 {
			t.Errorf("scaling 1 -> %d replicas took %d Update calls, want at most 3", replicas, after-before)
		}
		seen := make(map[uint64]bool, replicas)
		for _, task := range e.tasks() {
			if s := task.GetSlot(); s < 1 || s > replicas || seen[s] {
				t.Fatalf("task %s has slot %d, want each of 1..%d once", task.GetId(), s, replicas)
			}
			seen[task.GetSlot()] = true
		}

		// And back down: every task is deleted in one pass.
		before, _ = e.raft.counts()
		e.updateService("web", func(s *objectv1.Service) { s.GetSpec().GetReplicated().Replicas = 0 })
		e.waitFor("no tasks", func(tx *state.ReadTx) bool { return len(tx.TasksByService("web")) == 0 })
		e.idle()
		if after, _ := e.raft.counts(); after-before > 3 {
			t.Errorf("scaling %d -> 0 replicas took %d Update calls, want at most 3", replicas, after-before)
		}
	})
}

func TestReplicatedScaleDownRetiresHighestSlots(t *testing.T) {
	bubble(t, func(e *env) {
		e.createService(replicatedService("web", 5, restartAny))
		e.start()
		e.waitFor("5 tasks", func(tx *state.ReadTx) bool { return countDesired(tx, "web", stateRunning) == 5 })
		e.idle()
		// Slot 2 is assigned, slot 4 runs, slot 5 is assigned; slots 1 and 3
		// were never placed.
		e.report(e.slotTask("web", 2).GetId(), "n1", stateAssigned)
		e.report(e.slotTask("web", 4).GetId(), "n1", stateRunning)
		e.report(e.slotTask("web", 5).GetId(), "n2", stateAssigned)
		e.idle()
		keep := map[uint64]*objectv1.Task{1: e.slotTask("web", 1), 2: e.slotTask("web", 2)}
		pending3 := e.slotTask("web", 3)
		placed := []*objectv1.Task{e.slotTask("web", 4), e.slotTask("web", 5)}

		e.updateService("web", func(s *objectv1.Service) { s.GetSpec().GetReplicated().Replicas = 2 })
		e.waitFor("2 tasks desired running", func(tx *state.ReadTx) bool { return countDesired(tx, "web", stateRunning) == 2 })
		e.idle()

		// Slot 1 was never placed and the scale bumped spec_version, but its
		// copy of the spec is current: it is not rewritten either.
		for slot, want := range keep {
			if got := e.task(want.GetId()); !proto.Equal(got, want) {
				t.Errorf("slot %d task after scale down = %v, want it untouched: %v", slot, got, want)
			}
		}
		if got := e.task(pending3.GetId()); got != nil {
			t.Errorf("never-placed slot 3 task after scale down = %v, want it deleted", got)
		}
		for _, p := range placed {
			got := e.task(p.GetId())
			if got.GetDesiredState() != stateShutdown {
				t.Errorf("placed slot %d task desired_state = %v, want %v", p.GetSlot(), got.GetDesiredState(), stateShutdown)
			}
			if got.GetStatus().GetState() != p.GetStatus().GetState() {
				t.Errorf("placed slot %d task status.state = %v, want it left to its worker: %v",
					p.GetSlot(), got.GetStatus().GetState(), p.GetStatus().GetState())
			}
		}

		// Scale back up: slots 3 and 4 get new tasks; the shut-down ones
		// stay as history and are not revived.
		e.updateService("web", func(s *objectv1.Service) { s.GetSpec().GetReplicated().Replicas = 4 })
		e.waitFor("4 tasks desired running", func(tx *state.ReadTx) bool { return countDesired(tx, "web", stateRunning) == 4 })
		e.idle()
		var svc *objectv1.Service
		e.st.View(func(tx *state.ReadTx) { svc = tx.Service("web") })
		for slot := uint64(3); slot <= 4; slot++ {
			task := e.slotTask("web", slot)
			if task.GetId() == placed[0].GetId() || task.GetId() == pending3.GetId() {
				t.Errorf("slot %d after scale up reuses task %s, want a new one", slot, task.GetId())
			}
			checkNewTask(t, task, svc, slot, "")
		}
		for slot, want := range keep {
			if got := e.slotTask("web", slot); got.GetId() != want.GetId() {
				t.Errorf("slot %d task after scale up = %s, want %s kept", slot, got.GetId(), want.GetId())
			}
		}
		if got := len(e.tasks()); got != 6 {
			t.Errorf("tasks after scale up = %d, want 6 (4 desired running, 2 shut down)", got)
		}
	})
}

func TestReplicatedSpecUpdateRefreshesPendingTasks(t *testing.T) {
	bubble(t, func(e *env) {
		e.createService(replicatedService("web", 3, restartAny))
		e.start()
		e.waitFor("3 tasks", func(tx *state.ReadTx) bool { return countDesired(tx, "web", stateRunning) == 3 })
		e.idle()
		e.report(e.slotTask("web", 1).GetId(), "n1", stateRunning)
		e.idle()
		placed := e.slotTask("web", 1)
		pending := []*objectv1.Task{e.slotTask("web", 2), e.slotTask("web", 3)}

		e.updateService("web", func(s *objectv1.Service) {
			s.GetSpec().GetTask().GetContainer().Image = "registry.local:5000/web:2"
			s.GetSpec().GetAnnotations().Labels["tier"] = "front"
			s.GetSpec().Endpoint = &objectv1.EndpointSpec{Ports: []*objectv1.PortConfig{{TargetPort: 80, PublishedPort: 8080}}}
		})
		e.waitFor("pending tasks at spec_version 2", func(tx *state.ReadTx) bool {
			for _, p := range pending {
				if tx.Task(p.GetId()).GetSpecVersion() != 2 {
					return false
				}
			}
			return true
		})
		e.idle()

		var svc *objectv1.Service
		e.st.View(func(tx *state.ReadTx) { svc = tx.Service("web") })
		for _, p := range pending {
			got := e.task(p.GetId())
			if !proto.Equal(got.GetSpec(), svc.GetSpec().GetTask()) {
				t.Errorf("pending slot %d spec = %v, want the new %v", p.GetSlot(), got.GetSpec(), svc.GetSpec().GetTask())
			}
			if !proto.Equal(got.GetServiceAnnotations(), svc.GetSpec().GetAnnotations()) {
				t.Errorf("pending slot %d service_annotations = %v, want %v", p.GetSlot(), got.GetServiceAnnotations(), svc.GetSpec().GetAnnotations())
			}
			if !proto.Equal(got.GetEndpoint(), svc.GetSpec().GetEndpoint()) {
				t.Errorf("pending slot %d endpoint = %v, want the service's %v", p.GetSlot(), got.GetEndpoint(), svc.GetSpec().GetEndpoint())
			}
			if got.GetSlot() != p.GetSlot() || got.GetDesiredState() != stateRunning || !proto.Equal(got.GetStatus(), p.GetStatus()) {
				t.Errorf("pending slot %d after refresh = %v, want only spec, spec_version and annotations changed from %v", p.GetSlot(), got, p)
			}
		}
		// A placed task is not refreshed in place: the rolling update
		// retires it and its slot gets a new task with the new spec.
		if got := e.task(placed.GetId()); got.GetDesiredState() != objectv1.TaskState_TASK_STATE_SHUTDOWN || got.GetSpecVersion() != placed.GetSpecVersion() {
			t.Errorf("placed task after spec update = %v, want its old spec, desired shutdown", got)
		}
		// Stop-first, that new task is held until the old one stopped.
		if got := e.heldTask("web", 1); !proto.Equal(got.GetSpec(), svc.GetSpec().GetTask()) || got.GetId() == placed.GetId() {
			t.Errorf("slot 1 after the update = %v, want a new task with the new spec", got)
		}
		if got := len(e.tasks()); got != 4 {
			t.Errorf("tasks after spec update = %d, want 4 (2 refreshed in place, 1 replaced + its successor)", got)
		}
	})
}

// TestRollingUpdateParallelism: placed tasks are replaced parallelism at a
// time; the next batch starts once the previous one runs.
func TestRollingUpdateParallelism(t *testing.T) {
	bubble(t, func(e *env) {
		svc := replicatedService("web", 4, restartAny)
		svc.Spec.Update = &objectv1.UpdateConfig{Parallelism: 2}
		e.createService(svc)
		e.start()
		e.waitFor("4 tasks", func(tx *state.ReadTx) bool { return countDesired(tx, "web", stateRunning) == 4 })
		e.idle()
		for slot := uint64(1); slot <= 4; slot++ {
			e.report(e.slotTask("web", slot).GetId(), "n1", stateRunning)
		}
		e.idle()
		e.updateService("web", func(s *objectv1.Service) { s.GetSpec().GetTask().GetContainer().Image = "registry.local:5000/web:2" })
		e.idle()
		newImage := func(tx *state.ReadTx) int {
			n := 0
			for _, tk := range tx.TasksByService("web") {
				if wanted(tk) && tk.GetSpec().GetContainer().GetImage() == "registry.local:5000/web:2" {
					n++
				}
			}
			return n
		}
		var first int
		e.st.View(func(tx *state.ReadTx) { first = newImage(tx) })
		if first != 2 {
			t.Fatalf("first batch replaced %d tasks, want 2 (parallelism)", first)
		}
		// The first batch runs (once its old tasks have stopped): the
		// second batch follows.
		e.runAll("web")
		e.waitFor("all 4 on the new image", func(tx *state.ReadTx) bool { return newImage(tx) == 4 })
	})
}

func TestServiceRemovedRetiresTasks(t *testing.T) {
	bubble(t, func(e *env) {
		e.createService(replicatedService("web", 3, restartAny))
		e.createService(replicatedService("db", 1, restartAny))
		e.start()
		e.waitFor("4 tasks", func(tx *state.ReadTx) bool { return len(tx.Tasks()) == 4 })
		e.idle()
		e.report(e.slotTask("web", 1).GetId(), "n1", stateRunning)
		e.report(e.slotTask("web", 2).GetId(), "n1", stateAssigned)
		e.idle()
		running, assigned, pending := e.slotTask("web", 1), e.slotTask("web", 2), e.slotTask("web", 3)
		db := e.slotTask("db", 1)

		e.removeService("web")
		e.waitFor("web's tasks retired", func(tx *state.ReadTx) bool { return countDesired(tx, "web", stateRunning) == 0 })
		e.idle()

		if got := e.task(pending.GetId()); got != nil {
			t.Errorf("never-placed task of a removed service = %v, want it deleted", got)
		}
		for _, p := range []*objectv1.Task{running, assigned} {
			if got := e.task(p.GetId()).GetDesiredState(); got != stateShutdown {
				t.Errorf("placed task (status %v) of a removed service has desired_state %v, want %v",
					p.GetStatus().GetState(), got, stateShutdown)
			}
		}
		if got := e.task(db.GetId()); !proto.Equal(got, db) {
			t.Errorf("task of another service = %v, want untouched %v", got, db)
		}
	})
}

// TestNodeDownReplacesItsTasks: the tasks of a node that goes down are
// orphaned and replaced in their slots, in one write.
func TestNodeDownReplacesItsTasks(t *testing.T) {
	bubble(t, func(e *env) {
		e.createNode(node("n1", objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE, objectv1.NodeState_NODE_STATE_READY))
		e.createService(replicatedService("web", 3, restartAny))
		e.start()
		e.waitFor("3 tasks", func(tx *state.ReadTx) bool { return len(tx.TasksByService("web")) == 3 })
		e.idle()
		for _, tk := range e.tasks() {
			e.report(tk.GetId(), "n1", objectv1.TaskState_TASK_STATE_RUNNING)
		}
		e.idle()
		before, _ := e.raft.counts()
		e.updateNode("n1", func(n *objectv1.Node) { n.Status = &objectv1.NodeStatus{State: objectv1.NodeState_NODE_STATE_DOWN} })
		e.waitFor("3 replacements and 3 orphans", func(tx *state.ReadTx) bool {
			fresh, orphaned := 0, 0
			for _, tk := range tx.TasksByService("web") {
				switch {
				case tk.GetDesiredState() == objectv1.TaskState_TASK_STATE_RUNNING && tk.GetNodeId() == "":
					fresh++
				case tk.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_ORPHANED && tk.GetDesiredState() == objectv1.TaskState_TASK_STATE_SHUTDOWN:
					orphaned++
				}
			}
			return fresh == 3 && orphaned == 3
		})
		e.idle()
		if after, _ := e.raft.counts(); after-before != 1 {
			t.Errorf("replacing a down node's tasks took %d Update calls, want 1", after-before)
		}
		e.stopRun()
	})
}
