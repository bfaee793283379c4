package orchestrator

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func replicatedJob(id string, maxConcurrent, total uint64, cond objectv1.RestartCondition) *objectv1.Service {
	return &objectv1.Service{
		Id:          id,
		SpecVersion: 1,
		Spec: &objectv1.ServiceSpec{
			Annotations: &objectv1.Annotations{Name: "svc-" + id},
			Task:        taskSpec("registry.local:5000/batch:1", cond),
			Mode: &objectv1.ServiceSpec_ReplicatedJob{ReplicatedJob: &objectv1.ReplicatedJob{
				MaxConcurrent: maxConcurrent, TotalCompletions: total,
			}},
		},
	}
}

// globalJob is replicatedJob in global-job mode.
func globalJob(id string, cond objectv1.RestartCondition) *objectv1.Service {
	svc := replicatedJob(id, 0, 0, cond)
	svc.Spec.Mode = &objectv1.ServiceSpec_GlobalJob{GlobalJob: &objectv1.GlobalJob{}}
	return svc
}

// underWay returns a service's tasks desired running that have not ended,
// sorted by ID.
// startJob creates a job service, starts the orchestrator, waits for the
// job's n tasks and returns them (underWay).
func startJob(e *env, svc *objectv1.Service, n int) []*objectv1.Task {
	e.createService(svc)
	e.start()
	e.waitFor(fmt.Sprintf("%d tasks", n), func(tx *state.ReadTx) bool { return len(tx.TasksByService(svc.Id)) == n })
	e.idle()
	return underWay(e, svc.Id)
}

func underWay(e *env, serviceID string) []*objectv1.Task {
	var out []*objectv1.Task
	for _, t := range e.tasks() {
		if t.GetServiceId() == serviceID && wanted(t) && !ended(t) {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b *objectv1.Task) int {
		switch {
		case a.Id < b.Id:
			return -1
		case a.Id > b.Id:
			return 1
		}
		return 0
	})
	return out
}

// completedSlots returns the slots with a task of spec_version v that
// completed (and is kept, desired COMPLETE).
func completedSlots(e *env, serviceID string, v uint64) map[uint64]int {
	out := map[uint64]int{}
	for _, t := range e.tasks() {
		if t.GetServiceId() == serviceID && t.GetSpecVersion() == v && succeeded(t) && finished(t) {
			out[t.GetSlot()]++
		}
	}
	return out
}

func TestJobBounds(t *testing.T) {
	tests := []struct{ max, total, wantMax, wantTotal uint64 }{
		{0, 0, 1, 1},
		{0, 7, 1, 7},
		{3, 0, 3, 3},
		{5, 20, 5, 20},
	}
	for _, tt := range tests {
		m, n := JobBounds(&objectv1.ReplicatedJob{MaxConcurrent: tt.max, TotalCompletions: tt.total})
		if m != tt.wantMax || n != tt.wantTotal {
			t.Errorf("JobBounds(%d, %d) = %d, %d; want %d, %d", tt.max, tt.total, m, n, tt.wantMax, tt.wantTotal)
		}
	}
}

// TestReplicatedJobConcurrency runs a job of 20 completions, at most 5 at
// once, by reporting its tasks running and then complete (two at a time
// every third step, and one failure on the way), and checks after every
// step that no more than 5 tasks are under way, and as many as the job has
// left, and that it ends with 20 completed tasks, one per slot, which stay.
func TestReplicatedJobConcurrency(t *testing.T) {
	bubble(t, func(e *env) {
		e.createService(replicatedJob("batch", 5, 20, restartFailure))
		e.start()
		e.waitFor("5 tasks", func(tx *state.ReadTx) bool { return len(tx.TasksByService("batch")) >= 5 })
		failedOnce := false
		for step := 0; ; step++ {
			if step > 100 {
				t.Fatal("the job did not finish in 100 steps")
			}
			e.idle()
			run := underWay(e, "batch")
			done := len(completedSlots(e, "batch", 1))
			if len(run) > 5 {
				t.Fatalf("step %d: %d tasks under way, want at most 5", step, len(run))
			}
			if want := min(5, 20-done); len(run) != want {
				t.Fatalf("step %d: %d tasks under way with %d completed, want %d", step, len(run), done, want)
			}
			if len(run) == 0 {
				break
			}
			for _, tk := range run {
				if tk.GetStatus().GetState() < stateRunning {
					e.report(tk.Id, "n1", stateRunning)
				}
			}
			n := 1
			if step%3 == 0 && len(run) > 1 {
				n = 2
			}
			for _, tk := range run[:n] {
				end := stateComplete
				if step == 4 && !failedOnce {
					end, failedOnce = stateFailed, true
				}
				e.report(tk.Id, "", end)
			}
		}
		check := func(when string) {
			t.Helper()
			slots := completedSlots(e, "batch", 1)
			if len(slots) != 20 {
				t.Fatalf("%s: %d slots completed, want 20", when, len(slots))
			}
			for slot, n := range slots {
				if slot < 1 || slot > 20 || n != 1 {
					t.Errorf("%s: slot %d has %d completed tasks, want 1 in each of 1..20", when, slot, n)
				}
			}
			if run := underWay(e, "batch"); len(run) != 0 {
				t.Errorf("%s: %d tasks under way after the job, want none", when, len(run))
			}
		}
		check("at the end")
		if !failedOnce {
			t.Fatal("no task was failed")
		}
		e.stopRun()
		e.start()
		e.idle()
		check("after a new orchestrator")
	})
}

// TestJobSuccessNotRestarted: a task that completes is not run again even
// with restart condition any; one that fails under condition none is not
// replaced and keeps its slot.
func TestJobSuccessNotRestarted(t *testing.T) {
	for _, cond := range []objectv1.RestartCondition{restartAny, restartNone} {
		t.Run(cond.String(), func(t *testing.T) {
			bubble(t, func(e *env) {
				run := startJob(e, replicatedJob("batch", 2, 2, cond), 2)
				e.report(run[0].Id, "n1", stateComplete)
				e.report(run[1].Id, "n1", stateFailed)
				e.idle()
				tasks := e.tasks()
				switch cond {
				case restartAny:
					// The failed one is replaced; the completed one is not.
					if len(tasks) != 3 || len(underWay(e, "batch")) != 1 {
						t.Fatalf("tasks = %d, under way %d; want 3 and 1", len(tasks), len(underWay(e, "batch")))
					}
					if got := e.task(run[1].Id).GetDesiredState(); got != stateShutdown {
						t.Errorf("failed task desired %v, want SHUTDOWN (replaced)", got)
					}
				case restartNone:
					if len(tasks) != 2 || len(underWay(e, "batch")) != 0 {
						t.Fatalf("tasks = %d, under way %d; want 2 and 0", len(tasks), len(underWay(e, "batch")))
					}
					if got := e.task(run[1].Id).GetDesiredState(); got != stateComplete {
						t.Errorf("failed task desired %v, want COMPLETE (let end)", got)
					}
				}
				if got := e.task(run[0].Id).GetDesiredState(); got != stateComplete {
					t.Errorf("completed task desired %v, want COMPLETE", got)
				}
			})
		})
	}
}

// TestJobUpdateRunsAgain: a spec change runs a finished job again; the
// older run's tasks count for nothing and become history.
func TestJobUpdateRunsAgain(t *testing.T) {
	bubble(t, func(e *env) {
		e.createService(replicatedJob("batch", 2, 3, restartFailure))
		e.start()
		for i := 0; i < 3; i++ {
			e.idle()
			for _, tk := range underWay(e, "batch") {
				e.report(tk.Id, "n1", stateComplete)
			}
		}
		e.idle()
		if got := len(completedSlots(e, "batch", 1)); got != 3 {
			t.Fatalf("%d completed, want 3", got)
		}
		// Update while one old task would still be under way is covered by
		// retire; here the job is done and runs again.
		e.updateService("batch", func(s *objectv1.Service) { s.Spec.Task.Container.Image = "registry.local:5000/batch:2" })
		e.idle()
		run := underWay(e, "batch")
		if len(run) != 2 {
			t.Fatalf("%d tasks under way after the update, want 2", len(run))
		}
		for _, tk := range run {
			if tk.GetSpecVersion() != 2 || tk.GetSpec().GetContainer().GetImage() != "registry.local:5000/batch:2" {
				t.Errorf("new task %v, want spec_version 2 with the new image", tk)
			}
		}
		for _, tk := range e.tasks() {
			if tk.GetSpecVersion() == 1 && tk.GetDesiredState() != stateShutdown {
				t.Errorf("old task %s desired %v, want SHUTDOWN (history)", tk.Id, tk.GetDesiredState())
			}
		}
		// An update while the new run is under way stops its tasks.
		e.report(run[0].Id, "n1", stateRunning)
		e.updateService("batch", func(s *objectv1.Service) { s.Spec.Task.Container.Env = []string{"X=1"} })
		e.idle()
		if got := e.task(run[0].Id).GetDesiredState(); got != stateShutdown {
			t.Errorf("running task of the previous run desired %v, want SHUTDOWN", got)
		}
		if e.task(run[1].Id) != nil {
			t.Errorf("never-placed task of the previous run kept, want it deleted")
		}
		for _, tk := range underWay(e, "batch") {
			if tk.GetSpecVersion() != 3 {
				t.Errorf("task under way %s has spec_version %d, want 3", tk.Id, tk.GetSpecVersion())
			}
		}
		if got := len(underWay(e, "batch")); got != 2 {
			t.Errorf("%d tasks under way, want 2", got)
		}
	})
}

func TestGlobalJob(t *testing.T) {
	bubble(t, func(e *env) {
		for _, n := range []*objectv1.Node{
			node("a", availActive, nodeReady),
			node("b", availActive, nodeReady),
			node("paused", availPause, nodeReady),
			node("down", availActive, nodeDown),
		} {
			e.createNode(n)
		}
		e.createService(proto.Clone(globalJob("gj", restartFailure)).(*objectv1.Service))
		e.start()
		e.waitFor("2 tasks", func(tx *state.ReadTx) bool { return len(tx.TasksByService("gj")) >= 2 })
		e.idle()
		if got := runningNodes(e, "gj"); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("global job tasks on %q, want [a b]", got)
		}
		ta, tb := e.nodeTask("gj", "a"), e.nodeTask("gj", "b")
		e.report(ta.Id, "", stateComplete)
		e.report(tb.Id, "", stateFailed)
		e.idle()
		if got := runningNodes(e, "gj"); !slices.Equal(got, []string{"b"}) {
			t.Fatalf("after a completes and b fails: tasks under way on %q, want [b]", got)
		}
		if got := e.task(ta.Id).GetDesiredState(); got != stateComplete {
			t.Errorf("completed task desired %v, want COMPLETE", got)
		}
		tb2 := e.nodeTask("gj", "b")
		e.report(tb2.Id, "", stateComplete)
		e.createNode(node("c", availActive, nodeReady))
		e.idle()
		if got := runningNodes(e, "gj"); !slices.Equal(got, []string{"c"}) {
			t.Fatalf("after a node joins: tasks under way on %q, want [c]", got)
		}
	})
}

// TestJobLostAndDrainedNodes: a job's task under way on a node that goes
// down is orphaned and one on a drained node stopped; both slots run again.
// A task that completed on the drained node stays completed.
func TestJobLostAndDrainedNodes(t *testing.T) {
	bubble(t, func(e *env) {
		run := startJob(e, replicatedJob("batch", 3, 3, restartFailure), 3)
		e.report(run[0].Id, "down", stateRunning)
		e.report(run[1].Id, "drained", stateRunning)
		e.report(run[2].Id, "drained", stateComplete)
		e.idle()
		e.updateNode("down", func(n *objectv1.Node) { n.Status.State = nodeDown })
		e.updateNode("drained", func(n *objectv1.Node) { n.Spec.Availability = availDrain })
		e.idle()
		if got := e.task(run[0].Id).GetStatus().GetState(); got != objectv1.TaskState_TASK_STATE_ORPHANED {
			t.Errorf("task on the down node: %v, want ORPHANED", got)
		}
		if got := e.task(run[1].Id).GetDesiredState(); got != stateShutdown {
			t.Errorf("task on the drained node desired %v, want SHUTDOWN", got)
		}
		if got := e.task(run[2].Id).GetDesiredState(); got != stateComplete {
			t.Errorf("completed task desired %v, want COMPLETE", got)
		}
		now := underWay(e, "batch")
		if len(now) != 2 {
			t.Fatalf("%d tasks under way, want 2 (the down and drained nodes' slots)", len(now))
		}
		slots := []uint64{now[0].GetSlot(), now[1].GetSlot()}
		slices.Sort(slots)
		if want := []uint64{run[0].GetSlot(), run[1].GetSlot()}; !slices.Equal(slots, want) && !slices.Equal(slots, []uint64{want[1], want[0]}) {
			t.Errorf("new tasks in slots %v, want %v", slots, want)
		}
	})
}
