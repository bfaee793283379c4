package orchestrator

import (
	"context"
	"errors"
	"time"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

const deleteKind = raftv1.ActionKind_ACTION_KIND_DELETE

// settle is how long the orchestrator gathers further events after the
// first one before reconciling: a burst of changes (a stack of services, a
// node going down) becomes one pass and one write.
const settle = 20 * time.Millisecond

// pending is what the watch loop gathered for its next pass. Only the
// goroutine running watchLoop uses it.
type pending struct {
	// dirty holds the services to reconcile.
	dirty map[string]bool
	// nodes holds the nodes that changed: their tasks' services need a
	// look.
	nodes map[string]bool
	// started holds the services with a task that started running.
	started map[string]bool
	// wakes holds, per service, when a restart delay (an update's monitor
	// or delay, a held task's wait) runs out.
	wakes map[string]time.Time
	// allGlobal is set when every global service needs a look.
	allGlobal bool
}

func newPending() *pending {
	return &pending{dirty: map[string]bool{}, nodes: map[string]bool{}, started: map[string]bool{}, wakes: map[string]time.Time{}}
}

// watchLoop reconciles from one watch of the store: everything first, then
// what the events make dirty. It returns nil when ctx ends or the watch
// closes, and the error of a failed write other than a conflict.
func (o *Orchestrator) watchLoop(ctx context.Context) error {
	w := newPending()
	events, cancel := o.st.ViewAndWatch(w.seed)
	defer cancel()
	for {
		o.expandStarted(w)
		if len(w.dirty) > 0 || w.allGlobal || len(w.nodes) > 0 {
			o.expandNodes(w)
			if err := o.reconcile(ctx, w.dirty, w.wakes); err != nil {
				if errors.Is(err, sdk.ErrFailedPrecondition) || errors.Is(err, sdk.ErrAlreadyExists) || errors.Is(err, sdk.ErrNotFound) {
					// A concurrent write won: re-read and try again.
					o.log.Debug("reconcile conflict; retrying", "error", err)
					continue
				}
				return err
			}
			clear(w.dirty)
		}
		if !w.next(ctx, events) {
			return nil
		}
	}
}

// seed marks dirty what the first pass of a watch looks at: every service,
// and the services, gone, of tasks that still run or are to.
func (w *pending) seed(tx *state.ReadTx) {
	for _, s := range tx.Services() {
		w.dirty[s.Id] = true
	}
	// Tasks of services that no longer exist.
	for _, st := range []objectv1.TaskState{objectv1.TaskState_TASK_STATE_RUNNING, objectv1.TaskState_TASK_STATE_READY, objectv1.TaskState_TASK_STATE_COMPLETE} {
		for _, t := range tx.TasksByDesiredState(st) {
			if tx.Service(t.GetServiceId()) == nil {
				w.dirty[t.GetServiceId()] = true
			}
		}
	}
}

// expandStarted marks dirty the services with a task that started running
// and a rolling update open. A task that starts running matters only to a
// rolling update (a batch's monitor, a start-first replacement letting its
// old task go). Looking at a whole service for every task that starts would
// make bringing up a 10,000-task service quadratic.
func (o *Orchestrator) expandStarted(w *pending) {
	if len(w.started) == 0 {
		return
	}
	o.st.View(func(tx *state.ReadTx) {
		for id := range w.started {
			if rollingUpdateOpen(tx.Service(id)) {
				w.dirty[id] = true
			}
		}
	})
	clear(w.started)
}

// expandNodes marks dirty every global service when the set of nodes
// changed, and the services with tasks on changed nodes that are lost or
// drained.
func (o *Orchestrator) expandNodes(w *pending) {
	if w.allGlobal {
		o.st.View(func(tx *state.ReadTx) {
			for _, s := range tx.Services() {
				if isGlobal(s) {
					w.dirty[s.Id] = true
				}
			}
		})
		w.allGlobal = false
	}
	if len(w.nodes) == 0 {
		return
	}
	o.st.View(func(tx *state.ReadTx) {
		for id := range w.nodes {
			lost := nodeLost(tx, id)
			if !lost && !nodeDrained(tx, id) {
				continue
			}
			for _, t := range tx.TasksByNode(id) {
				// A task still stopping on a lost node no longer holds its
				// slot's replacement (hold.go).
				if t.GetDesiredState() == objectv1.TaskState_TASK_STATE_RUNNING || (lost && !ended(t)) {
					w.dirty[t.GetServiceId()] = true
				}
			}
		}
	})
	clear(w.nodes)
}

// next waits for what calls for another pass: the earliest wake coming due,
// or an event and the burst it starts, gathered for settle. It returns
// false when ctx ends or the watch closes.
func (w *pending) next(ctx context.Context, events <-chan state.Event) bool {
	var (
		due     <-chan time.Time
		dueTime *time.Timer
	)
	if at, ok := w.firstWake(); ok {
		dueTime = time.NewTimer(time.Until(at))
		due = dueTime.C
	}
	stopDue := func() {
		if dueTime != nil {
			dueTime.Stop()
		}
	}
	select {
	case <-ctx.Done():
		stopDue()
		return false
	case now := <-due:
		for id, at := range w.wakes {
			if !at.After(now) {
				w.dirty[id] = true
				delete(w.wakes, id)
			}
		}
		return true
	case ev, ok := <-events:
		stopDue()
		if !ok {
			return false
		}
		w.mark(ev)
	}
	return w.gather(ctx, events)
}

// firstWake returns the earliest of the wakes, if there is one.
func (w *pending) firstWake() (time.Time, bool) {
	next := time.Time{}
	for _, at := range w.wakes {
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next, len(w.wakes) > 0
}

// gather marks the events that come within settle. It returns false when
// ctx ends or the watch closes.
func (w *pending) gather(ctx context.Context, events <-chan state.Event) bool {
	timer := time.NewTimer(settle)
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return false
		case ev, ok := <-events:
			if !ok {
				timer.Stop()
				return false
			}
			w.mark(ev)
		case <-timer.C:
			return true
		}
	}
}

func (w *pending) mark(ev state.Event) {
	w.allGlobal = mark(ev, w.dirty, w.nodes, w.started) || w.allGlobal
}

// rollingUpdateOpen reports whether svc has a rolling update (or rollback)
// that is not finished: running, or paused.
func rollingUpdateOpen(svc *objectv1.Service) bool {
	return svc.GetUpdateStatus() != nil && !updateDone(svc.GetUpdateStatus())
}

// mark records what an event makes dirty; it returns true when every global
// service needs a look (the set of nodes changed). Services with a task that
// started running go to started: they need a look only while a rolling
// update is open, which the caller checks.
func mark(ev state.Event, dirty, nodes, started map[string]bool) bool {
	switch {
	case ev.Service != nil:
		dirty[ev.Service.Id] = true
	case ev.Task != nil:
		t := ev.Task
		// Only changes that can call for a replacement matter: a task that
		// ended while desired running, or a task that disappeared.
		if ev.Kind == deleteKind || (t.GetDesiredState() == objectv1.TaskState_TASK_STATE_RUNNING && ended(t)) {
			dirty[t.GetServiceId()] = true
		}
		// A retired task that its node reports ended is history to prune;
		// for a removed service, the pass deletes it (nothing else would).
		// ORPHANED is this stage's own write, made with the replacement.
		if ended(t) && ev.OldTask != nil && !ended(ev.OldTask) && t.GetDesiredState() != objectv1.TaskState_TASK_STATE_RUNNING &&
			t.GetStatus().GetState() != objectv1.TaskState_TASK_STATE_ORPHANED {
			dirty[t.GetServiceId()] = true
		}
		// A task that starts running, or whose health changes while it
		// runs (healthy: it counts as started; unhealthy: it failed), may
		// let a rolling update move on.
		if t.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_RUNNING && ev.OldTask != nil && started != nil &&
			(ev.OldTask.GetStatus().GetState() < objectv1.TaskState_TASK_STATE_RUNNING ||
				ev.OldTask.GetStatus().GetHealth() != t.GetStatus().GetHealth()) {
			started[t.GetServiceId()] = true
		}
	case ev.Node != nil:
		if nodes != nil {
			nodes[ev.Node.Id] = true
		}
		return true
	}
	return false
}
