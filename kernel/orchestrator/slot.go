package orchestrator

import (
	"sort"
	"time"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// Slot keeping is what replicated and global services share: each slot (a
// slot number 1..replicas, or an eligible node) runs one task of the
// service. keepSlots does it for both; slotRules says what sets them apart.

// slotTasks are the tasks desired running of one slot (one node, for a
// global service) in a pass, neither lost nor ended.
type slotTasks struct {
	// cur are up to date (never-placed ones were refreshed).
	cur []*objectv1.Task
	// old are placed and run an out-of-date spec.
	old []*objectv1.Task
}

// slotRules is what keepSlots needs to know of a service's slots, keyed by
// K: the slot number of a replicated service, the node ID of a global one.
// The funcs run inside the pass's transaction, on its goroutine.
type slotRules[K uint64 | string] struct {
	// key names the slot of a task.
	key func(t *objectv1.Task) K
	// drop reports whether a task desired running (placed on a node that
	// is not lost) no longer has its slot: the slot was scaled away, or
	// its node drained or no longer eligible. keepSlots retires it.
	drop func(t *objectv1.Task) bool
	// holds reports whether a finished task's slot is still the
	// service's, so that the task may keep it.
	holds func(t *objectv1.Task) bool
	// accepts reports whether a slot takes a new task (a paused node does
	// not).
	accepts func(k K) bool
	// at is where a new task of a slot goes: its slot number and node ID.
	at func(k K) (slot uint64, nodeID string)
	// free lists, in order, the slots that want a new task: those not in
	// live.
	free func(live map[K]bool) []K
}

// slotPass keeps the slots of one service in one pass.
type slotPass[K uint64 | string] struct {
	tx    *state.Tx
	svc   *objectv1.Service
	tasks []*objectv1.Task // all the service's tasks, history included
	now   time.Time
	stats *passStats
	rules slotRules[K]
	// live holds the slots that have their task: one running, one waiting
	// out a restart delay, or one finished for good.
	live map[K]bool
}

// keepSlots brings a replicated or global service's tasks in line: tasks of
// lost nodes are orphaned, those without a slot retired, each slot keeps
// one task of its kind (up to date, or out of date and left to the rolling
// update), ended tasks go to the restart policy, held tasks are released,
// the rolling update's batch gets its new tasks, and every free slot a new
// task. All of it is written through tx; stats counts it.
func keepSlots[K uint64 | string](tx *state.Tx, svc *objectv1.Service, tasks []*objectv1.Task, now time.Time, stats *passStats, rules slotRules[K]) error {
	s := &slotPass[K]{tx: tx, svc: svc, tasks: tasks, now: now, stats: stats, rules: rules, live: map[K]bool{}}
	slots, over, err := s.classify()
	if err != nil {
		return err
	}
	stale, held, err := s.keep(slots)
	if err != nil {
		return err
	}
	if err := s.restart(over); err != nil {
		return err
	}
	p, err := rollingUpdate(tx, svc, stale, tasks, now, stats)
	if err != nil || p.respec {
		return err
	}
	// The pass's retirements are done: a slot's tasks still stopping hold
	// its stop-first replacement.
	st := &stopping{tx: tx, svcID: svc.Id}
	if err := release(tx, svc, held, now, st, stats); err != nil {
		return err
	}
	if err := s.replace(p, st); err != nil {
		return err
	}
	if err := s.keepFinished(); err != nil {
		return err
	}
	for _, k := range rules.free(s.live) {
		slot, nodeID := rules.at(k)
		if err := create(tx, newTask(svc, slot, nodeID, now), stats); err != nil {
			return err
		}
	}
	return nil
}

// classify files the wanted tasks by slot, as slots' current or out-of-date
// tasks (refreshing those not placed yet), and returns the ended ones
// apart. Tasks of lost nodes are orphaned and those without a slot retired:
// their slots are refilled later in the pass.
func (s *slotPass[K]) classify() (map[K]*slotTasks, []*objectv1.Task, error) {
	slots := map[K]*slotTasks{}
	in := func(t *objectv1.Task) *slotTasks {
		k := s.rules.key(t)
		if slots[k] == nil {
			slots[k] = &slotTasks{}
		}
		return slots[k]
	}
	var over []*objectv1.Task // ended tasks still desired running
	for _, t := range s.tasks {
		// Held tasks (desired READY, never placed) are their slots' new
		// tasks too.
		if !wanted(t) {
			continue
		}
		var err error
		switch {
		case onLostNode(s.tx.ReadTx, t):
			err = orphan(s.tx, t, s.now, s.stats)
		case s.rules.drop(t):
			// Its node, if it has one, stops it, whatever the restart
			// policy (the task did not end); its slot is refilled, if
			// still the service's. Placement keeps the new task off
			// drained nodes.
			err = retire(s.tx, t, s.stats)
		case ended(t):
			over = append(over, t)
		case !placed(t) && outdated(t, s.svc):
			// Not on a node yet: bring it up to date in place.
			next := refresh(t, s.svc)
			err = s.tx.UpdateTask(next)
			in(t).cur = append(in(t).cur, next)
		case outdated(t, s.svc):
			// On a node with an old spec: the rolling update decides when
			// it is replaced.
			in(t).old = append(in(t).old, t)
		default:
			in(t).cur = append(in(t).cur, t)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	return slots, over, nil
}

// keep keeps one current and one out-of-date task per slot and marks the
// slots live. It returns the slots whose task is out of date, for the
// rolling update, and the slots' held tasks, for release.
func (s *slotPass[K]) keep(slots map[K]*slotTasks) ([]staleSlot, []*objectv1.Task, error) {
	var stale []staleSlot
	var held []*objectv1.Task
	for _, k := range sortedKeys(slots) {
		cur, err := keepOne(s.tx, slots[k].cur, s.stats)
		if err != nil {
			return nil, nil, err
		}
		old, err := keepOne(s.tx, slots[k].old, s.stats)
		if err != nil {
			return nil, nil, err
		}
		s.live[k] = true
		if cur != nil && isHeld(cur) {
			held = append(held, cur)
		}
		if old != nil {
			// With a current task beside it, that is its start-first
			// replacement.
			stale = append(stale, staleSlot{old: old, repl: cur})
		}
	}
	return stale, held, nil
}

// restart settles the ended tasks still desired running: a task whose slot
// runs another is history; otherwise the restart policy decides whether
// its slot gets a new task (the slot stays free, for the end of the pass to
// refill), waits out a delay, or keeps the task, finished.
func (s *slotPass[K]) restart(over []*objectv1.Task) error {
	for _, t := range over {
		k := s.rules.key(t)
		if s.live[k] {
			// The slot runs another task (the old one beside a failed
			// start-first replacement, or a duplicate).
			if err := retire(s.tx, t, s.stats); err != nil {
				return err
			}
			continue
		}
		again, at := decide(s.svc, t, s.tasks, s.now)
		if again && !at.IsZero() {
			// The restart delay runs: the slot waits, and the pass after it
			// comes back to this task.
			s.live[k] = true
			s.stats.wake(s.svc.Id, at)
			continue
		}
		if err := settleEnded(s.tx, t, again); err != nil {
			return err
		}
		if !again {
			s.live[k] = true
		}
	}
	return nil
}

// replace creates the new tasks of the rolling update's batch: held
// stop-first ones, for the old tasks it stopped, and start-first ones
// beside the old tasks that stay until they run. A slot that accepts no new
// task gets none: stop-first, it is free again; start-first, its old task
// is retired (it is updated stop-first).
func (s *slotPass[K]) replace(p plan, st *stopping) error {
	for _, t := range p.stopped {
		k := s.rules.key(t)
		if !s.rules.accepts(k) {
			s.live[k] = false
			continue
		}
		slot, nodeID := s.rules.at(k)
		if err := create(s.tx, newHeld(s.svc, slot, nodeID, s.now, st, s.stats), s.stats); err != nil {
			return err
		}
	}
	for _, t := range p.started {
		k := s.rules.key(t)
		if !s.rules.accepts(k) {
			if err := retire(s.tx, t, s.stats); err != nil {
				return err
			}
			continue
		}
		slot, nodeID := s.rules.at(k)
		if err := create(s.tx, newTask(s.svc, slot, nodeID, s.now), s.stats); err != nil {
			return err
		}
	}
	return nil
}

// keepFinished lets finished tasks hold their slots, after the running ones
// so that a slot held by both keeps the running one; the others are
// retired.
func (s *slotPass[K]) keepFinished() error {
	for _, t := range s.tasks {
		if !finished(t) {
			continue
		}
		k := s.rules.key(t)
		if !s.rules.holds(t) || s.live[k] {
			if err := retire(s.tx, t, s.stats); err != nil {
				return err
			}
			continue
		}
		s.live[k] = true
	}
	return nil
}

// keepOne keeps the most advanced of ts (the highest observed state, then
// the lowest ID) and retires the others: a slot runs one task of a kind.
func keepOne(tx *state.Tx, ts []*objectv1.Task, stats *passStats) (*objectv1.Task, error) {
	if len(ts) == 0 {
		return nil, nil
	}
	sort.Slice(ts, func(i, j int) bool {
		if a, b := ts[i].GetStatus().GetState(), ts[j].GetStatus().GetState(); a != b {
			return a > b
		}
		return ts[i].Id < ts[j].Id
	})
	for _, t := range ts[1:] {
		if err := retire(tx, t, stats); err != nil {
			return nil, err
		}
	}
	return ts[0], nil
}

func sortedKeys[K uint64 | string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}
