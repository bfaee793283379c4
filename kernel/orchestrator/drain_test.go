package orchestrator

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func drain(n *objectv1.Node)    { n.Spec.Availability = availDrain }
func pause(n *objectv1.Node)    { n.Spec.Availability = availPause }
func activate(n *objectv1.Node) { n.Spec.Availability = availActive }

// TestDrainReplacesReplicatedTasks drains a node running tasks of two
// replicated services: each is asked to shut down there, left to its node
// to report, and its slot gets a new pending task, whatever the restart
// policy (the task did not end), all in one write. Tasks on other nodes are
// not touched.
func TestDrainReplacesReplicatedTasks(t *testing.T) {
	for _, cond := range []objectv1.RestartCondition{restartAny, restartFailure, restartNone} {
		t.Run(cond.String(), func(t *testing.T) {
			bubble(t, func(e *env) {
				e.createNode(node("n1", availActive, nodeReady))
				e.createNode(node("n2", availActive, nodeReady))
				e.createService(replicatedService("web", 3, cond))
				e.createService(replicatedService("db", 1, cond))
				e.start()
				e.waitFor("4 tasks", func(tx *state.ReadTx) bool { return len(tx.Tasks()) == 4 })
				e.idle()
				e.report(e.slotTask("web", 1).GetId(), "n1", stateRunning)
				e.report(e.slotTask("web", 2).GetId(), "n1", stateRunning)
				e.report(e.slotTask("web", 3).GetId(), "n2", stateRunning)
				e.report(e.slotTask("db", 1).GetId(), "n1", stateAssigned)
				e.idle()
				onN1 := []*objectv1.Task{e.slotTask("web", 1), e.slotTask("web", 2), e.slotTask("db", 1)}
				onN2 := e.slotTask("web", 3)

				before, _ := e.raft.counts()
				e.updateNode("n1", drain)
				e.waitFor("n1's tasks shut down", func(tx *state.ReadTx) bool {
					for _, old := range onN1 {
						if tx.Task(old.GetId()).GetDesiredState() == stateRunning {
							return false
						}
					}
					return true
				})
				e.idle()
				if after, _ := e.raft.counts(); after-before != 1 {
					t.Errorf("draining a node with 3 tasks took %d Update calls, want 1", after-before)
				}

				var svc map[string]*objectv1.Service
				e.st.View(func(tx *state.ReadTx) {
					svc = map[string]*objectv1.Service{"web": tx.Service("web"), "db": tx.Service("db")}
				})
				for _, old := range onN1 {
					got := e.task(old.GetId())
					if got.GetDesiredState() != stateShutdown {
						t.Errorf("task %s on drained n1: desired_state = %v, want %v", old.GetId(), got.GetDesiredState(), stateShutdown)
					}
					if !proto.Equal(got.GetStatus(), old.GetStatus()) || got.GetNodeId() != "n1" {
						t.Errorf("task %s on drained n1 = %v, want its status and node left to n1 to report: %v", old.GetId(), got, old)
					}
					repl := e.slotTask(old.GetServiceId(), old.GetSlot())
					if repl.GetId() == old.GetId() {
						t.Fatalf("slot %s.%d: still task %s, want a replacement", old.GetServiceId(), old.GetSlot(), old.GetId())
					}
					checkNewTask(t, repl, svc[old.GetServiceId()], old.GetSlot(), "")
				}
				if got := e.task(onN2.GetId()); !proto.Equal(got, onN2) {
					t.Errorf("task on n2 after n1 drained = %v, want untouched %v", got, onN2)
				}

				// n1 reports its tasks stopped: that is history, nothing
				// more is replaced.
				for _, old := range onN1 {
					e.report(old.GetId(), "", stateShutdown)
				}
				e.idle()
				if got := len(e.tasks()); got != 7 {
					t.Errorf("tasks after n1 stopped its tasks = %d, want 7 (4 desired running, 3 shut down)", got)
				}
				for _, id := range []string{"web", "db"} {
					var n int
					e.st.View(func(tx *state.ReadTx) { n = countDesired(tx, id, stateRunning) })
					if want := int(svc[id].GetSpec().GetReplicated().GetReplicas()); n != want {
						t.Errorf("service %s has %d tasks desired running, want %d", id, n, want)
					}
				}
			})
		})
	}
}

// TestDrainShutsDownGlobalTasks: a drained node's global tasks are shut
// down and not replaced anywhere (a global service runs one task per
// eligible node), in the same write as its replicated tasks' replacements.
func TestDrainShutsDownGlobalTasks(t *testing.T) {
	bubble(t, func(e *env) {
		e.createNode(node("a", availActive, nodeReady))
		e.createNode(node("b", availActive, nodeReady))
		e.createService(globalService("agent", restartAny))
		e.createService(replicatedService("web", 1, restartAny))
		e.start()
		e.waitFor("3 tasks", func(tx *state.ReadTx) bool { return len(tx.Tasks()) == 3 })
		e.idle()
		e.report(e.nodeTask("agent", "a").GetId(), "", stateRunning)
		e.report(e.nodeTask("agent", "b").GetId(), "", stateRunning)
		e.report(e.slotTask("web", 1).GetId(), "a", stateRunning)
		e.idle()
		onA, onB, web := e.nodeTask("agent", "a"), e.nodeTask("agent", "b"), e.slotTask("web", 1)

		before, _ := e.raft.counts()
		e.updateNode("a", drain)
		e.waitFor("a's tasks shut down", func(tx *state.ReadTx) bool {
			return tx.Task(onA.GetId()).GetDesiredState() == stateShutdown && tx.Task(web.GetId()).GetDesiredState() == stateShutdown
		})
		e.idle()
		if after, _ := e.raft.counts(); after-before != 1 {
			t.Errorf("draining a node took %d Update calls, want 1", after-before)
		}
		if got, want := runningNodes(e, "agent"), []string{"b"}; !slices.Equal(got, want) {
			t.Errorf("after a drained: agent tasks desired running on %q, want %q", got, want)
		}
		if got := e.task(onA.GetId()); got.GetStatus().GetState() != stateRunning {
			t.Errorf("agent task on drained a = %v, want its status left to a to report", got)
		}
		if got := e.task(onB.GetId()); !proto.Equal(got, onB) {
			t.Errorf("agent task on b = %v, want untouched %v", got, onB)
		}
		if got := e.slotTask("web", 1); got.GetId() == web.GetId() || got.GetNodeId() != "" {
			t.Errorf("web slot 1 after a drained = %v, want a new task waiting for a node", got)
		}
	})
}

// TestDrainOnlyNodeLeavesReplacementsPending drains the only node: the
// replacements wait for a node (placement then shows the scheduler's
// reason; see kernel/placement), and nothing is put back on the drained
// node.
func TestDrainOnlyNodeLeavesReplacementsPending(t *testing.T) {
	bubble(t, func(e *env) {
		e.createNode(node("n1", availActive, nodeReady))
		e.createService(replicatedService("web", 2, restartAny))
		e.start()
		e.waitFor("2 tasks", func(tx *state.ReadTx) bool { return len(tx.Tasks()) == 2 })
		e.idle()
		for slot := uint64(1); slot <= 2; slot++ {
			e.report(e.slotTask("web", slot).GetId(), "n1", stateRunning)
		}
		e.idle()
		e.updateNode("n1", drain)
		e.waitFor("2 replacements", func(tx *state.ReadTx) bool { return len(tx.Tasks()) == 4 })
		e.idle()
		for slot := uint64(1); slot <= 2; slot++ {
			repl := e.slotTask("web", slot)
			if repl.GetNodeId() != "" || repl.GetStatus().GetState() != statePending || repl.GetStatus().GetMessage() != PendingMessage {
				t.Errorf("slot %d replacement = %v, want pending without a node, %q", slot, repl, PendingMessage)
			}
		}
		// A later pass over the service (a new leader) changes nothing:
		// the replacements stay pending, the shut-down tasks stay history.
		_, commits := e.raft.counts()
		e.stopRun()
		e.start()
		e.idle()
		if _, got := e.raft.counts(); got != commits {
			t.Errorf("a restarted orchestrator committed %d writes with the only node drained, want 0", got-commits)
		}
	})
}

// TestAvailabilityBackToActiveMovesNothing: as in swarm, a drained node
// set back to active gets none of the tasks that left it back, but takes new
// ones (here, its global task); a paused node keeps its tasks throughout.
func TestAvailabilityBackToActiveMovesNothing(t *testing.T) {
	tests := []struct {
		name string
		off  func(n *objectv1.Node)
		// wantWeb and wantAgent are the nodes of the tasks desired running
		// once n1 is active again.
		wantWeb, wantAgent []string
	}{
		{"drain", drain, []string{"n2", "n2"}, []string{"n1", "n2"}},
		{"pause", pause, []string{"n1", "n1"}, []string{"n1", "n2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bubble(t, func(e *env) {
				e.createNode(node("n1", availActive, nodeReady))
				e.createNode(node("n2", availActive, nodeReady))
				e.createService(replicatedService("web", 2, restartAny))
				e.createService(globalService("agent", restartAny))
				e.start()
				e.waitFor("4 tasks", func(tx *state.ReadTx) bool { return len(tx.Tasks()) == 4 })
				e.idle()
				for slot := uint64(1); slot <= 2; slot++ {
					e.report(e.slotTask("web", slot).GetId(), "n1", stateRunning)
				}
				e.report(e.nodeTask("agent", "n1").GetId(), "", stateRunning)
				e.report(e.nodeTask("agent", "n2").GetId(), "", stateRunning)
				e.idle()
				agentN1 := e.nodeTask("agent", "n1")
				_, commits := e.raft.counts()

				e.updateNode("n1", tt.off)
				e.idle()
				if tt.name == "pause" {
					if _, got := e.raft.counts(); got != commits {
						t.Errorf("pausing a node: %d orchestrator writes, want 0 (it keeps its tasks)", got-commits)
					}
				} else {
					// The replacements run on n2, where the scheduler put
					// them.
					for slot := uint64(1); slot <= 2; slot++ {
						e.report(e.slotTask("web", slot).GetId(), "n2", stateRunning)
					}
					e.idle()
				}
				tasks := len(e.tasks())

				e.updateNode("n1", activate)
				e.idle()
				var web []string
				e.st.View(func(tx *state.ReadTx) {
					for _, tk := range desired(tx.TasksByService("web"), stateRunning) {
						web = append(web, tk.GetNodeId())
					}
				})
				slices.Sort(web)
				if agent := runningNodes(e, "agent"); !slices.Equal(web, tt.wantWeb) || !slices.Equal(agent, tt.wantAgent) {
					t.Errorf("n1 active again after %s: web on %q, agent on %q; want web on %q, agent on %q",
						tt.name, web, agent, tt.wantWeb, tt.wantAgent)
				}
				moved := e.nodeTask("agent", "n1").GetId() != agentN1.GetId()
				if want := tt.name == "drain"; moved != want {
					t.Errorf("n1 active again after %s: a new agent task on n1 = %t, want %t", tt.name, moved, want)
				}
				// Only the global service's new task is written: no web
				// task comes back to n1.
				wantTasks := tasks
				if moved {
					wantTasks++
				}
				if got := len(e.tasks()); got != wantTasks {
					t.Errorf("tasks after n1 is active again = %d, want %d", got, wantTasks)
				}
			})
		})
	}
}
