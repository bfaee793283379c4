package orchestrator

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// runningNodes returns the nodes holding a task of the service desired
// running, sorted, one entry per task.
func runningNodes(e *env, serviceID string) []string {
	var out []string
	e.st.View(func(tx *state.ReadTx) {
		for _, t := range desired(tx.TasksByService(serviceID), stateRunning) {
			out = append(out, t.GetNodeId())
		}
	})
	slices.Sort(out)
	return out
}

func TestGlobalOneTaskPerEligibleNode(t *testing.T) {
	bubble(t, func(e *env) {
		for _, n := range []*objectv1.Node{
			node("active", availActive, nodeReady),
			node("unknown", availActive, nodeUnknown), // a new leader has not heard from it yet
			node("down", availActive, nodeDown),
			node("drained", availDrain, nodeReady),
			node("paused", availPause, nodeReady), // accepts no new tasks
		} {
			e.createNode(n)
		}
		svc := globalService("agent", restartAny)
		e.createService(proto.Clone(svc).(*objectv1.Service))
		e.start()
		e.waitFor("2 tasks", func(tx *state.ReadTx) bool { return len(tx.TasksByService("agent")) >= 2 })
		e.idle()

		if got, want := runningNodes(e, "agent"), []string{"active", "unknown"}; !slices.Equal(got, want) {
			t.Fatalf("global service tasks on nodes %q, want %q", got, want)
		}
		if got := len(e.tasks()); got != 2 {
			t.Errorf("tasks = %d, want 2", got)
		}
		for _, id := range []string{"active", "unknown"} {
			checkNewTask(t, e.nodeTask("agent", id), svc, 0, id)
		}
	})
}

func TestGlobalFollowsNodes(t *testing.T) {
	bubble(t, func(e *env) {
		e.createNode(node("a", availActive, nodeReady))
		e.createNode(node("b", availActive, nodeReady))
		e.createNode(node("c", availActive, nodeReady))
		e.createService(globalService("agent", restartAny))
		e.createService(replicatedService("web", 2, restartAny))
		e.start()
		e.waitFor("3 tasks", func(tx *state.ReadTx) bool { return countDesired(tx, "agent", stateRunning) == 3 })
		e.idle()
		// b's and c's tasks run; a's was never placed.
		e.report(e.nodeTask("agent", "b").GetId(), "", stateRunning)
		e.report(e.nodeTask("agent", "c").GetId(), "", stateRunning)
		e.idle()
		pendingA := e.nodeTask("agent", "a")
		runningB := e.nodeTask("agent", "b")
		runningC := e.nodeTask("agent", "c")
		web := []*objectv1.Task{e.slotTask("web", 1), e.slotTask("web", 2)}

		steps := []struct {
			name   string
			change func()
			want   []string
		}{
			{"node d joins", func() { e.createNode(node("d", availActive, nodeUnknown)) }, []string{"a", "b", "c", "d"}},
			{"a drained", func() { e.updateNode("a", func(n *objectv1.Node) { n.Spec.Availability = availDrain }) }, []string{"b", "c", "d"}},
			{"b down", func() { e.updateNode("b", func(n *objectv1.Node) { n.Status.State = nodeDown }) }, []string{"c", "d"}},
			{"c removed", func() { e.removeNode("c") }, []string{"d"}},
			{"b back", func() { e.updateNode("b", func(n *objectv1.Node) { n.Status.State = nodeReady }) }, []string{"b", "d"}},
			{"a active again", func() { e.updateNode("a", func(n *objectv1.Node) { n.Spec.Availability = availActive }) }, []string{"a", "b", "d"}},
		}
		for _, s := range steps {
			s.change()
			e.waitFor(s.name, func(tx *state.ReadTx) bool { return countDesired(tx, "agent", stateRunning) == len(s.want) })
			e.idle()
			if got := runningNodes(e, "agent"); !slices.Equal(got, s.want) {
				t.Fatalf("after %s: tasks desired running on %q, want %q", s.name, got, s.want)
			}
		}

		// Retired tasks: the never-placed one deleted, placed ones asked to
		// shut down (b's node will stop it when it hears back).
		if got := e.task(pendingA.GetId()); got != nil {
			t.Errorf("never-placed task of drained node a = %v, want it deleted", got)
		}
		for _, p := range []*objectv1.Task{runningB, runningC} {
			if got := e.task(p.GetId()).GetDesiredState(); got != stateShutdown {
				t.Errorf("running task on node %s desired_state = %v, want %v", p.GetNodeId(), got, stateShutdown)
			}
		}
		if got := e.nodeTask("agent", "b"); got.GetId() == runningB.GetId() {
			t.Errorf("node b back up runs task %s again, want a new task", got.GetId())
		}
		// Node changes do not touch replicated services.
		for _, w := range web {
			if got := e.task(w.GetId()); !proto.Equal(got, w) {
				t.Errorf("replicated task after node changes = %v, want untouched %v", got, w)
			}
		}
	})
}

// TestGlobalPausedNodeKeepsItsTask follows the contract of
// NODE_AVAILABILITY_PAUSE: the node keeps its tasks and gets no new ones.
func TestGlobalPausedNodeKeepsItsTask(t *testing.T) {
	bubble(t, func(e *env) {
		e.createNode(node("a", availActive, nodeReady))
		e.createService(globalService("agent", restartAny))
		e.start()
		e.waitFor("a's task", func(tx *state.ReadTx) bool { return countDesired(tx, "agent", stateRunning) == 1 })
		e.report(e.nodeTask("agent", "a").GetId(), "", stateRunning)
		e.idle()
		running := e.nodeTask("agent", "a")

		e.updateNode("a", func(n *objectv1.Node) { n.Spec.Availability = availPause })
		e.createService(globalService("metrics", restartAny))
		e.idle()
		if got := e.task(running.GetId()); !proto.Equal(got, running) {
			t.Errorf("task on a paused node = %v, want it kept: %v", got, running)
		}
		if got := runningNodes(e, "metrics"); len(got) != 0 {
			t.Errorf("new global service on a paused node has tasks on %q, want none", got)
		}

		e.updateNode("a", func(n *objectv1.Node) { n.Spec.Availability = availActive })
		e.waitFor("metrics on a", func(tx *state.ReadTx) bool { return countDesired(tx, "metrics", stateRunning) == 1 })
		e.idle()
		if got := e.nodeTask("agent", "a"); got.GetId() != running.GetId() {
			t.Errorf("node a active again runs agent task %s, want %s kept", got.GetId(), running.GetId())
		}
	})
}

func TestGlobalRestartPolicy(t *testing.T) {
	tests := []restartCase{
		{restartAny, stateFailed, true},
		{restartFailure, stateComplete, false},
		{restartNone, stateFailed, false},
	}
	for _, tt := range tests {
		t.Run(tt.cond.String()+"/"+tt.end.String(), func(t *testing.T) {
			bubble(t, func(e *env) {
				e.createNode(node("a", availActive, nodeReady))
				e.createNode(node("b", availActive, nodeReady))
				e.createService(globalService("agent", tt.cond))
				e.start()
				e.waitFor("2 tasks", func(tx *state.ReadTx) bool { return countDesired(tx, "agent", stateRunning) == 2 })
				old := e.nodeTask("agent", "a").GetId()
				e.report(old, "", stateRunning)
				e.endTask(old, tt.end)

				check := func(when string) {
					t.Helper()
					want := []string{"b"}
					if tt.replace {
						want = []string{"a", "b"}
					}
					if got := runningNodes(e, "agent"); !slices.Equal(got, want) {
						t.Errorf("%s: tasks desired running on %q, want %q", when, got, want)
					}
				}
				check("after the report")
				// A node event makes every global service reconciled again.
				e.createNode(node("c", availDrain, nodeReady))
				e.idle()
				check("after a node change")
				e.stopRun()
				e.start()
				e.idle()
				check("after a restart")
			})
		})
	}
}
