package orchestrator

import (
	"sort"
	"time"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// reconcileGlobal keeps one task of a global service on every eligible
// node, the way reconcileReplicated keeps one per slot.
func reconcileGlobal(tx *state.Tx, svc *objectv1.Service, tasks []*objectv1.Task, now time.Time, stats *passStats) error {
	// A node that is up keeps its task unless drained; only an active one
	// gets a new task: a paused node "keeps its tasks but accepts no new
	// ones", a replacement included.
	keeps := map[string]bool{}
	accepts := map[string]bool{}
	for _, n := range tx.Nodes() {
		// Only nodes that run tasks (an agent with an executor) get them.
		if n.GetStatus().GetState() == objectv1.NodeState_NODE_STATE_DOWN || n.GetDescription().GetExecutor() == "" {
			continue
		}
		switch n.GetSpec().GetAvailability() {
		case objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE:
			keeps[n.Id], accepts[n.Id] = true, true
		case objectv1.NodeAvailability_NODE_AVAILABILITY_PAUSE:
			keeps[n.Id] = true
		}
	}
	nodes := map[string]*slotTasks{}
	on := func(id string) *slotTasks {
		if nodes[id] == nil {
			nodes[id] = &slotTasks{}
		}
		return nodes[id]
	}
	var over []*objectv1.Task
	for _, t := range tasks {
		if !wanted(t) {
			continue
		}
		switch id := t.GetNodeId(); {
		case placed(t) && !ended(t) && nodeLost(tx.ReadTx, id):
			if err := orphan(tx, t, now, stats); err != nil {
				return err
			}
		case !keeps[id]:
			if err := retire(tx, t, stats); err != nil {
				return err
			}
		case ended(t):
			over = append(over, t)
		case !placed(t) && outdated(t, svc):
			next := refresh(t, svc)
			if err := tx.UpdateTask(next); err != nil {
				return err
			}
			on(id).cur = append(on(id).cur, next)
		case outdated(t, svc):
			on(id).old = append(on(id).old, t)
		default:
			on(id).cur = append(on(id).cur, t)
		}
	}
	covered := map[string]bool{}
	var stale []staleSlot
	var held []*objectv1.Task
	for _, id := range sortedKeys(nodes) {
		cur, err := keepOne(tx, nodes[id].cur, stats)
		if err != nil {
			return err
		}
		old, err := keepOne(tx, nodes[id].old, stats)
		if err != nil {
			return err
		}
		covered[id] = true
		if cur != nil && isHeld(cur) {
			held = append(held, cur)
		}
		if old != nil {
			stale = append(stale, staleSlot{old: old, repl: cur})
		}
	}
	for _, t := range over {
		if covered[t.GetNodeId()] {
			if err := retire(tx, t, stats); err != nil {
				return err
			}
			continue
		}
		again, at := decide(svc, t, tasks, now)
		if again && !at.IsZero() {
			covered[t.GetNodeId()] = true
			stats.wake(svc.Id, at)
			continue
		}
		if err := settleEnded(tx, t, again); err != nil {
			return err
		}
		if !again {
			covered[t.GetNodeId()] = true
		}
	}
	p, err := rollingUpdate(tx, svc, stale, tasks, now, stats)
	if err != nil || p.respec {
		return err
	}
	st := &stopping{tx: tx, svcID: svc.Id}
	if err := release(tx, svc, held, now, st, stats); err != nil {
		return err
	}
	for _, t := range p.stopped {
		// A new task with the new spec, once the old one has stopped; a
		// node that takes no new task gets none.
		if !accepts[t.GetNodeId()] {
			covered[t.GetNodeId()] = false
			continue
		}
		if err := tx.CreateTask(newHeld(svc, 0, t.GetNodeId(), now, st, stats)); err != nil {
			return err
		}
		stats.created++
	}
	for _, t := range p.started {
		if !accepts[t.GetNodeId()] {
			// A paused node takes no new task, a replacement included: it
			// is updated stop-first, like every paused node.
			if err := retire(tx, t, stats); err != nil {
				return err
			}
			continue
		}
		if err := tx.CreateTask(newTask(svc, 0, t.GetNodeId(), now)); err != nil {
			return err
		}
		stats.created++
	}
	for _, t := range tasks {
		if !finished(t) {
			continue
		}
		if !keeps[t.GetNodeId()] || covered[t.GetNodeId()] {
			if err := retire(tx, t, stats); err != nil {
				return err
			}
			continue
		}
		covered[t.GetNodeId()] = true
	}
	ids := make([]string, 0, len(accepts))
	for id := range accepts {
		if !covered[id] {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		if err := tx.CreateTask(newTask(svc, 0, id, now)); err != nil {
			return err
		}
		stats.created++
	}
	return nil
}
