package placement

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/kernel/state/statetest"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
)

func TestEligible(t *testing.T) {
	const (
		active = objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE
		pause  = objectv1.NodeAvailability_NODE_AVAILABILITY_PAUSE
		drain  = objectv1.NodeAvailability_NODE_AVAILABILITY_DRAIN
		ready  = objectv1.NodeState_NODE_STATE_READY
	)
	tests := []struct {
		name     string
		avail    objectv1.NodeAvailability
		state    objectv1.NodeState
		executor string
		want     bool
	}{
		{"ready and active", active, ready, "simulated", true},
		{"paused", pause, ready, "simulated", false},
		{"drained", drain, ready, "simulated", false},
		{"availability unset", objectv1.NodeAvailability_NODE_AVAILABILITY_UNSPECIFIED, ready, "simulated", false},
		{"down", active, objectv1.NodeState_NODE_STATE_DOWN, "simulated", false},
		{"not heard from yet", active, objectv1.NodeState_NODE_STATE_UNKNOWN, "simulated", false},
		{"no executor", active, ready, "", false},
	}
	for _, tt := range tests {
		n := &objectv1.Node{
			Id:          "n",
			Spec:        &objectv1.NodeSpec{Availability: tt.avail},
			Status:      &objectv1.NodeStatus{State: tt.state},
			Description: &objectv1.NodeDescription{Executor: tt.executor},
		}
		if got := eligible(n); got != tt.want {
			t.Errorf("eligible(%s) = %t, want %t", tt.name, got, tt.want)
		}
	}
}

// setAvailability writes the availability of nodes, keeping their labels.
func (e *env) setAvailability(avail objectv1.NodeAvailability, ids ...string) {
	e.t.Helper()
	e.write(func(tx *state.Tx) error {
		for _, id := range ids {
			n := tx.Node(id)
			next := &objectv1.Node{Id: n.Id, Meta: n.Meta, Status: n.Status, Description: n.Description,
				Spec: &objectv1.NodeSpec{Availability: avail, Annotations: n.GetSpec().GetAnnotations()}}
			if err := tx.UpdateNode(next); err != nil {
				return err
			}
		}
		return nil
	})
}

// pluginView replays the view changes of requests, as the plugin keeps
// them, and returns the nodes of the resulting view, sorted.
func pluginView(reqs []*schedulerv1.ScheduleRequest) []string {
	view := map[string]bool{}
	for _, r := range reqs {
		if r.GetViewBase() == 0 {
			clear(view)
		}
		for _, n := range r.GetUpsertNodes() {
			view[n.GetId()] = true
		}
		for _, id := range r.GetRemovedNodes() {
			delete(view, id)
		}
	}
	var ids []string
	for id := range view {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// TestNoTaskOnDrainedOrPausedNode: drained and paused nodes leave the
// plugin's view, so a task that only they could take waits with the
// plugin's reason; once one is active again, the task is placed there.
func TestNoTaskOnDrainedOrPausedNode(t *testing.T) {
	for _, avail := range []objectv1.NodeAvailability{
		objectv1.NodeAvailability_NODE_AVAILABILITY_DRAIN,
		objectv1.NodeAvailability_NODE_AVAILABILITY_PAUSE,
	} {
		t.Run(avail.String(), func(t *testing.T) {
			e := newEnv(t)
			// n1 is labelled ok=no: only n2 and n3 can take tasks.
			e.setAvailability(avail, "n2", "n3")
			e.createTasks(3, "d")
			e.waitFor("refusals shown", func(tx *state.ReadTx) bool {
				for _, id := range []string{"d00000", "d00001", "d00002"} {
					if tx.Task(id).GetStatus().GetMessage() != NoSuitableNode+"no node labelled ok=yes" {
						return false
					}
				}
				return true
			})
			e.st.View(func(tx *state.ReadTx) {
				for _, id := range []string{"d00000", "d00001", "d00002"} {
					if tk := tx.Task(id); tk.GetNodeId() != "" || tk.GetStatus().GetState() != objectv1.TaskState_TASK_STATE_PENDING {
						t.Errorf("task %s with n2, n3 %v = %v, want pending without a node", id, avail, tk)
					}
				}
			})
			if got, want := pluginView(e.plugin.requests()), []string{"n1"}; !slices.Equal(got, want) {
				t.Errorf("plugin's view with n2, n3 %v = %q, want %q", avail, got, want)
			}

			e.setAvailability(objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE, "n3")
			e.waitFor("placed on n3", func(tx *state.ReadTx) bool { return len(tx.TasksByNode("n3")) == 3 })
		})
	}
}

// TestCommitRefusesNodeNoLongerEligible: a decision for a node drained (or
// paused, or down) after the view was sent to the plugin is not committed;
// the task keeps waiting.
func TestCommitRefusesNodeNoLongerEligible(t *testing.T) {
	tests := []struct {
		name   string
		change func(n *objectv1.Node)
	}{
		{"drained", func(n *objectv1.Node) { n.Spec.Availability = objectv1.NodeAvailability_NODE_AVAILABILITY_DRAIN }},
		{"paused", func(n *objectv1.Node) { n.Spec.Availability = objectv1.NodeAvailability_NODE_AVAILABILITY_PAUSE }},
		{"down", func(n *objectv1.Node) { n.Status.State = objectv1.NodeState_NODE_STATE_DOWN }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := state.New()
			r := statetest.NewRaft(st)
			write := func(fn func(tx *state.Tx) error) {
				t.Helper()
				if err := r.Update(context.Background(), fn); err != nil {
					t.Fatal(err)
				}
			}
			write(func(tx *state.Tx) error {
				if err := tx.CreateNode(&objectv1.Node{
					Id:          "n1",
					Spec:        &objectv1.NodeSpec{Availability: objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE},
					Status:      &objectv1.NodeStatus{State: objectv1.NodeState_NODE_STATE_READY},
					Description: &objectv1.NodeDescription{Executor: "simulated"},
				}); err != nil {
					return err
				}
				return tx.CreateTask(&objectv1.Task{Id: "t1", ServiceId: "s1", DesiredState: objectv1.TaskState_TASK_STATE_RUNNING,
					Status: &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_PENDING}})
			})
			// The plugin chose n1; n1 changes before the commit.
			write(func(tx *state.Tx) error {
				n := tx.Node("n1")
				next := &objectv1.Node{Id: n.Id, Meta: n.Meta, Description: n.Description,
					Spec: &objectv1.NodeSpec{Availability: n.GetSpec().GetAvailability()}, Status: &objectv1.NodeStatus{State: n.GetStatus().GetState()}}
				tt.change(next)
				return tx.UpdateNode(next)
			})
			p := New(r, st, &fakePlugin{}, slog.New(slog.DiscardHandler))
			done, no, err := p.commit(context.Background(), []*schedulerv1.Decision{{TaskId: "t1", NodeId: "n1"}})
			if err != nil || len(done) != 0 || !slices.Equal(no, []string{"t1"}) {
				t.Errorf("commit(t1 on %s n1) = done %q, refused %q, %v; want t1 refused", tt.name, done, no, err)
			}
			st.View(func(tx *state.ReadTx) {
				if tk := tx.Task("t1"); tk.GetNodeId() != "" || tk.GetStatus().GetState() != objectv1.TaskState_TASK_STATE_PENDING {
					t.Errorf("task after commit on %s n1 = %v, want it still pending without a node", tt.name, tk)
				}
			})
		})
	}
}

// TestViewVersionsChainAcrossGlobalTasks: a batch of only global tasks
// (which come with their node and need no plugin call) sends no request, so
// it must not advance the view's version either: the next request builds on
// the plugin's copy instead of being refused and sent again whole.
func TestViewVersionsChainAcrossGlobalTasks(t *testing.T) {
	e := newEnv(t)
	// The plugin holds the view (sent while idle) before the global task.
	deadline := time.Now().Add(10 * time.Second)
	for len(e.plugin.requests()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	e.write(func(tx *state.Tx) error {
		return tx.CreateTask(&objectv1.Task{Id: "g1", ServiceId: "global", NodeId: "n3",
			DesiredState: objectv1.TaskState_TASK_STATE_RUNNING,
			Status:       &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_PENDING}})
	})
	e.waitFor("g1 assigned", func(tx *state.ReadTx) bool {
		return tx.Task("g1").GetStatus().GetState() == objectv1.TaskState_TASK_STATE_ASSIGNED
	})
	e.createTasks(1, "r")
	e.waitFor("r00000 placed", func(tx *state.ReadTx) bool { return tx.Task("r00000").GetNodeId() == "n2" })
	reqs := e.plugin.requests()
	for i, r := range reqs {
		if i > 0 && r.GetViewBase() != reqs[i-1].GetViewVersion() {
			t.Errorf("call %d: base %d, want the previous version %d", i, r.GetViewBase(), reqs[i-1].GetViewVersion())
		}
	}
	if got := pluginView(reqs); !slices.Equal(got, []string{"n1", "n2", "n3"}) {
		t.Errorf("plugin's view = %q, want n1, n2, n3", got)
	}
}
