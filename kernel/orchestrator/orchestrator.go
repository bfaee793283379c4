// Package orchestrator reconciles services with their tasks on the leader:
// one task per slot for replicated services, one per eligible node for
// global ones, tasks run to completion for jobs (job.go), replacing ended tasks per the restart policy and removing
// tasks of removed or scaled-down services, replacing the tasks of lost
// (down or removed) and drained nodes, and rolling spec changes out
// (update.go).
//
// It is driven by store watch events and restartable: Run rebuilds
// everything from a view of the store. All the changes of one pass, however
// many services and tasks they touch, go into one transaction, which the
// batched proposer commits as one or a few Raft entries: scaling to 10,000
// replicas is not 10,000 writes.
package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/kernel/ids"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

const deleteKind = raftv1.ActionKind_ACTION_KIND_DELETE

// Raft commits transactions; raftstore.Node implements it.
type Raft interface {
	Update(ctx context.Context, fn func(tx *state.Tx) error) error
}

// Orchestrator is the leader-only stage that creates and removes tasks.
type Orchestrator struct {
	raft Raft
	st   *state.Store
	log  *slog.Logger
}

// New returns an orchestrator writing through r and watching st.
func New(r Raft, st *state.Store, logger *slog.Logger) *Orchestrator {
	return &Orchestrator{raft: r, st: st, log: logger}
}

// settle is how long the orchestrator gathers further events after the
// first one before reconciling: a burst of changes (a stack of services, a
// node going down) becomes one pass and one write.
const settle = 20 * time.Millisecond

// PendingMessage is the status message of a task waiting for a node.
const PendingMessage = "waiting for a node to run it"

// Run reconciles until ctx ends. It returns nil on ctx's end and an error
// only if a write fails for a reason other than a conflict (which it retries
// after re-reading).
func (o *Orchestrator) Run(ctx context.Context) error {
	for {
		err := o.watchLoop(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		// The watch closed (a snapshot was restored, or we fell behind):
		// start again from a fresh view. Only this stage's own picture is
		// stale, so it rebuilds in place rather than failing the leader's
		// other stages.
		o.log.Warn("state watch closed (fell behind, or the state was restored); starting over from the store")
	}
}

func (o *Orchestrator) watchLoop(ctx context.Context) error {
	dirty := map[string]bool{}
	nodes := map[string]bool{}      // nodes that changed: their tasks' services need a look
	started := map[string]bool{}    // services with a task that started running
	wakes := map[string]time.Time{} // services with a restart delay running out
	allGlobal := false
	events, cancel := o.st.ViewAndWatch(func(tx *state.ReadTx) {
		for _, s := range tx.Services() {
			dirty[s.Id] = true
		}
		// Tasks of services that no longer exist.
		for _, st := range []objectv1.TaskState{objectv1.TaskState_TASK_STATE_RUNNING, objectv1.TaskState_TASK_STATE_READY, objectv1.TaskState_TASK_STATE_COMPLETE} {
			for _, t := range tx.TasksByDesiredState(st) {
				if tx.Service(t.GetServiceId()) == nil {
					dirty[t.GetServiceId()] = true
				}
			}
		}
	})
	defer cancel()
	for {
		if len(started) > 0 {
			// A task that starts running matters only to a rolling update
			// (a batch's monitor, a start-first replacement letting its old
			// task go). Looking at a whole service for every task that
			// starts would make bringing up a 10,000-task service
			// quadratic.
			o.st.View(func(tx *state.ReadTx) {
				for id := range started {
					if rollingUpdateOpen(tx.Service(id)) {
						dirty[id] = true
					}
				}
			})
			clear(started)
		}
		if len(dirty) > 0 || allGlobal || len(nodes) > 0 {
			if allGlobal {
				o.st.View(func(tx *state.ReadTx) {
					for _, s := range tx.Services() {
						if isGlobal(s) {
							dirty[s.Id] = true
						}
					}
				})
				allGlobal = false
			}
			if len(nodes) > 0 {
				o.st.View(func(tx *state.ReadTx) {
					for id := range nodes {
						lost := nodeLost(tx, id)
						if !lost && !nodeDrained(tx, id) {
							continue
						}
						for _, t := range tx.TasksByNode(id) {
							// A task still stopping on a lost node no
							// longer holds its slot's replacement
							// (hold.go).
							if t.GetDesiredState() == objectv1.TaskState_TASK_STATE_RUNNING || (lost && !ended(t)) {
								dirty[t.GetServiceId()] = true
							}
						}
					}
				})
				clear(nodes)
			}
			if err := o.reconcile(ctx, dirty, wakes); err != nil {
				if errors.Is(err, sdk.ErrFailedPrecondition) || errors.Is(err, sdk.ErrAlreadyExists) || errors.Is(err, sdk.ErrNotFound) {
					// A concurrent write won: re-read and try again.
					o.log.Debug("reconcile conflict; retrying", "error", err)
					continue
				}
				return err
			}
			clear(dirty)
		}
		// Wait for the next event (or a restart delay running out), then
		// gather the burst it starts.
		var (
			due     <-chan time.Time
			dueTime *time.Timer
		)
		if len(wakes) > 0 {
			next := time.Time{}
			for _, at := range wakes {
				if next.IsZero() || at.Before(next) {
					next = at
				}
			}
			dueTime = time.NewTimer(time.Until(next))
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
			return nil
		case now := <-due:
			for id, at := range wakes {
				if !at.After(now) {
					dirty[id] = true
					delete(wakes, id)
				}
			}
			continue
		case ev, ok := <-events:
			stopDue()
			if !ok {
				return nil
			}
			allGlobal = mark(ev, dirty, nodes, started) || allGlobal
		}
		timer := time.NewTimer(settle)
	gather:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil
			case ev, ok := <-events:
				if !ok {
					timer.Stop()
					return nil
				}
				allGlobal = mark(ev, dirty, nodes, started) || allGlobal
			case <-timer.C:
				break gather
			}
		}
	}
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

// nodeLost reports whether a task's node is lost: its tasks will not be
// heard of again and are replaced elsewhere. A node is lost when it is down,
// or when it was removed from the cluster (`node rm --force` while up): its
// session is closed and it cannot open another.
func nodeLost(tx *state.ReadTx, id string) bool {
	return lostReason(tx, id) != ""
}

// lostReason says why a node is lost, or "" if it is not.
func lostReason(tx *state.ReadTx, id string) string {
	n := tx.Node(id)
	switch {
	case n == nil:
		return "node removed"
	case n.GetStatus().GetState() == objectv1.NodeState_NODE_STATE_DOWN:
		return "node down"
	}
	return ""
}

// nodeDrained reports whether a node is drained: it is up, but its tasks
// are to be shut down there and replaced elsewhere, as in swarm. Setting it
// back to active moves nothing back; it only takes new tasks again.
func nodeDrained(tx *state.ReadTx, id string) bool {
	return tx.Node(id).GetSpec().GetAvailability() == objectv1.NodeAvailability_NODE_AVAILABILITY_DRAIN
}

// orphan takes a task of a lost node out of service: it is marked ORPHANED
// (its node is not there to report) and not wanted, so a node that comes
// back removes it instead of running it twice.
func orphan(tx *state.Tx, t *objectv1.Task, now time.Time, stats *passStats) error {
	next := proto.Clone(t).(*objectv1.Task)
	next.DesiredState = objectv1.TaskState_TASK_STATE_SHUTDOWN
	next.Status = &objectv1.TaskStatus{
		Timestamp: timestamppb.New(now),
		State:     objectv1.TaskState_TASK_STATE_ORPHANED,
		Message:   lostReason(tx.ReadTx, t.GetNodeId()) + ": task replaced",
	}
	stats.orphaned++
	return tx.UpdateTask(next)
}

// reconcile brings every dirty service in line in one transaction.
func (o *Orchestrator) reconcile(ctx context.Context, dirty map[string]bool, wakes map[string]time.Time) error {
	ids := make([]string, 0, len(dirty))
	for id := range dirty {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var stats passStats
	err := o.raft.Update(ctx, func(tx *state.Tx) error {
		stats = passStats{}
		now := tx.Now()
		for _, id := range ids {
			if err := reconcileService(tx, id, now, &stats); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reconcile %d services: %w", len(ids), err)
	}
	for id, at := range stats.wakes {
		if cur, ok := wakes[id]; !ok || at.Before(cur) {
			wakes[id] = at
		}
	}
	if stats.created+stats.removed+stats.stopped+stats.orphaned+stats.released > 0 {
		o.log.Info("services reconciled", "services", len(ids), "tasks_created", stats.created,
			"tasks_removed", stats.removed, "tasks_stopped", stats.stopped, "tasks_orphaned", stats.orphaned,
			"tasks_drained", stats.drained, "tasks_held", stats.held, "tasks_released", stats.released)
	}
	if stats.unconfirmed > 0 {
		o.log.Warn("started stop-first replacements whose old tasks were not reported stopped in time",
			"tasks", stats.unconfirmed, "waited", holdTimeout.String()+" beyond the stop grace period")
	}
	for _, n := range stats.updates {
		o.log.Info("rolling update", "service_id", n.serviceID, "state", n.state, "message", n.message)
	}
	return nil
}

type passStats struct {
	created, removed, stopped, orphaned int
	// drained counts the tasks of drained nodes asked to shut down (also
	// counted in stopped).
	drained int
	// held counts the new tasks created held (desired READY, also counted
	// in created), released those moved to RUNNING, and unconfirmed those
	// released before the tasks they replace were reported stopped
	// (hold.go).
	held, released, unconfirmed int
	// wakes holds, per service, when a delayed restart, an update's monitor
	// period or its delay is due.
	wakes map[string]time.Time
	// updates are the rolling updates whose state changed, to log once
	// the pass is committed.
	updates []updateNote
}

type updateNote struct {
	serviceID, message string
	state              objectv1.UpdateState
}

func (s *passStats) note(serviceID string, st *objectv1.UpdateStatus) {
	s.updates = append(s.updates, updateNote{serviceID: serviceID, state: st.GetState(), message: st.GetMessage()})
}

func (s *passStats) wake(serviceID string, at time.Time) {
	if s.wakes == nil {
		s.wakes = map[string]time.Time{}
	}
	if cur, ok := s.wakes[serviceID]; !ok || at.Before(cur) {
		s.wakes[serviceID] = at
	}
}

// ended reports whether a task's process is over (or never will run).
func ended(t *objectv1.Task) bool {
	return t.GetStatus().GetState() >= objectv1.TaskState_TASK_STATE_COMPLETE
}

// placed reports whether a task was ever handed to a node.
func placed(t *objectv1.Task) bool {
	return t.GetStatus().GetState() >= objectv1.TaskState_TASK_STATE_ASSIGNED
}

// finished reports whether the orchestrator let a task end for good: it
// ended and its restart policy did not replace it. Such a task keeps its
// slot (or node) with desired state COMPLETE, as in SwarmKit. Were it marked
// SHUTDOWN like a replaced task, its slot would look empty to the next pass
// over the service (a scale change, another task ending, a new leader's
// first view) and that pass would start the task again, against the policy.
func finished(t *objectv1.Task) bool {
	return t.GetDesiredState() == objectv1.TaskState_TASK_STATE_COMPLETE
}

// outdated reports whether a task's copy of its service's spec differs from
// the service's. It compares content, not only spec_version: every spec
// change bumps spec_version, the replica count included, and rewriting every
// pending task of a service on a scale change would make the write as big as
// the service and make the scheduler's concurrent placement of those tasks
// fail on version conflicts. A task whose copy matches keeps the
// spec_version it was written at.
func outdated(t *objectv1.Task, svc *objectv1.Service) bool {
	return t.GetSpecVersion() != svc.GetSpecVersion() &&
		(!proto.Equal(t.GetSpec(), svc.GetSpec().GetTask()) ||
			!proto.Equal(t.GetServiceAnnotations(), svc.GetSpec().GetAnnotations()) ||
			!proto.Equal(t.GetEndpoint(), svc.GetSpec().GetEndpoint()))
}

// retire takes a task out of service: never-placed tasks are deleted
// outright; placed ones are asked to shut down, so their node stops them.
func retire(tx *state.Tx, t *objectv1.Task, stats *passStats) error {
	if !placed(t) {
		stats.removed++
		return tx.DeleteTask(t.Id)
	}
	if t.GetDesiredState() >= objectv1.TaskState_TASK_STATE_SHUTDOWN {
		return nil
	}
	next := proto.Clone(t).(*objectv1.Task)
	next.DesiredState = objectv1.TaskState_TASK_STATE_SHUTDOWN
	stats.stopped++
	return tx.UpdateTask(next)
}

func reconcileService(tx *state.Tx, id string, now time.Time, stats *passStats) error {
	svc := tx.Service(id)
	tasks := tx.TasksByService(id)
	if svc == nil {
		for _, t := range tasks {
			// A task that ended is done with its node whatever its desired
			// state: marking it SHUTDOWN would leave it for a pass that
			// nothing triggers (the task will not change again).
			if retired(t) || ended(t) {
				// History of a removed service: nothing to keep it for.
				stats.removed++
				if err := tx.DeleteTask(t.Id); err != nil {
					return err
				}
				continue
			}
			if err := retire(tx, t, stats); err != nil {
				return err
			}
		}
		return nil
	}
	var err error
	switch {
	case isJob(svc):
		err = reconcileJob(tx, svc, tasks, now, stats) // job.go
	case svc.GetSpec().GetGlobal() != nil:
		err = reconcileGlobal(tx, svc, tasks, now, stats)
	default:
		err = reconcileReplicated(tx, svc, tasks, now, stats)
	}
	if err != nil {
		return err
	}
	return pruneHistory(tx, svc, stats)
}

// retired reports whether a task is only history: not wanted, and its node
// (if it had one) is done with it.
func retired(t *objectv1.Task) bool {
	return !wanted(t) && !finished(t) && (ended(t) || !placed(t))
}

// defaultHistory is the number of retired tasks kept per slot when the
// cluster sets none (the cluster default, 5).
const defaultHistory = 5

// pruneHistory deletes the oldest retired tasks of each slot (each node, for
// global services) beyond the cluster's task_history_retention, so that
// restarts and updates do not grow the state without end.
func pruneHistory(tx *state.Tx, svc *objectv1.Service, stats *passStats) error {
	keep := defaultHistory
	if o := tx.Cluster().GetSpec().GetOrchestration(); o != nil {
		keep = int(max(o.GetTaskHistoryRetention(), 0))
	}
	bySlot := map[string][]*objectv1.Task{}
	for _, t := range tx.TasksByService(svc.Id) {
		if !retired(t) {
			continue
		}
		key := fmt.Sprint(t.GetSlot())
		if isGlobal(svc) {
			key = t.GetNodeId()
		}
		bySlot[key] = append(bySlot[key], t)
	}
	for _, hist := range bySlot {
		if len(hist) <= keep {
			continue
		}
		sort.Slice(hist, func(i, j int) bool {
			a, b := hist[i].GetMeta().GetCreatedAt().AsTime(), hist[j].GetMeta().GetCreatedAt().AsTime()
			if !a.Equal(b) {
				return a.After(b)
			}
			return hist[i].Id > hist[j].Id
		})
		for _, t := range hist[keep:] {
			stats.removed++
			if err := tx.DeleteTask(t.Id); err != nil {
				return err
			}
		}
	}
	return nil
}

// slotTasks are the tasks desired running of one slot (one node, for a
// global service) in a pass, neither lost nor ended.
type slotTasks struct {
	// cur are up to date (never-placed ones were refreshed).
	cur []*objectv1.Task
	// old are placed and run an out-of-date spec.
	old []*objectv1.Task
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

func reconcileReplicated(tx *state.Tx, svc *objectv1.Service, tasks []*objectv1.Task, now time.Time, stats *passStats) error {
	// Validation bounds replicas; a negative count must still never become
	// a huge unsigned one.
	want := uint64(max(svc.GetSpec().GetReplicated().GetReplicas(), 0))
	slots := map[uint64]*slotTasks{}
	in := func(slot uint64) *slotTasks {
		if slots[slot] == nil {
			slots[slot] = &slotTasks{}
		}
		return slots[slot]
	}
	var over []*objectv1.Task // ended tasks still desired running
	for _, t := range tasks {
		// Held tasks (desired READY, never placed) are their slots' new
		// tasks too.
		if !wanted(t) {
			continue
		}
		switch {
		case placed(t) && !ended(t) && nodeLost(tx.ReadTx, t.GetNodeId()):
			// Its node is lost: replace it (the slot is refilled below).
			if err := orphan(tx, t, now, stats); err != nil {
				return err
			}
		case placed(t) && !ended(t) && nodeDrained(tx.ReadTx, t.GetNodeId()):
			// Its node is drained: its node stops it, and the slot is
			// refilled below, whatever the restart policy (the task did
			// not end). Placement keeps the new task off drained nodes.
			stats.drained++
			if err := retire(tx, t, stats); err != nil {
				return err
			}
		case t.GetSlot() > want || t.GetSlot() == 0:
			// Scaled down.
			if err := retire(tx, t, stats); err != nil {
				return err
			}
		case ended(t):
			over = append(over, t)
		case !placed(t) && outdated(t, svc):
			// Not on a node yet: bring it up to date in place.
			next := refresh(t, svc)
			if err := tx.UpdateTask(next); err != nil {
				return err
			}
			in(t.GetSlot()).cur = append(in(t.GetSlot()).cur, next)
		case outdated(t, svc):
			// On a node with an old spec: the rolling update below decides
			// when it is replaced.
			in(t.GetSlot()).old = append(in(t.GetSlot()).old, t)
		default:
			in(t.GetSlot()).cur = append(in(t.GetSlot()).cur, t)
		}
	}
	live := map[uint64]bool{}
	var stale []staleSlot
	var held []*objectv1.Task
	for _, slot := range sortedKeys(slots) {
		cur, err := keepOne(tx, slots[slot].cur, stats)
		if err != nil {
			return err
		}
		old, err := keepOne(tx, slots[slot].old, stats)
		if err != nil {
			return err
		}
		live[slot] = true
		if cur != nil && isHeld(cur) {
			held = append(held, cur)
		}
		if old != nil {
			// With a current task beside it, that is its start-first
			// replacement.
			stale = append(stale, staleSlot{old: old, repl: cur})
		}
	}
	for _, t := range over {
		if live[t.GetSlot()] {
			// The slot runs another task (the old one beside a failed
			// start-first replacement, or a duplicate): this one is history.
			if err := retire(tx, t, stats); err != nil {
				return err
			}
			continue
		}
		// The task is over; whether its slot gets a new one is the restart
		// policy's call.
		again, at := decide(svc, t, tasks, now)
		if again && !at.IsZero() {
			// The restart delay runs: the slot waits, and the pass after it
			// comes back to this task.
			live[t.GetSlot()] = true
			stats.wake(svc.Id, at)
			continue
		}
		if err := settleEnded(tx, t, again); err != nil {
			return err
		}
		if !again {
			live[t.GetSlot()] = true
		} // else the slot stays free and is refilled below
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
	for _, t := range p.stopped {
		// Its new task, with the new spec, waits for it to stop.
		if err := tx.CreateTask(newHeld(svc, t.GetSlot(), "", now, st, stats)); err != nil {
			return err
		}
		stats.created++
	}
	for _, t := range p.started {
		if err := tx.CreateTask(newTask(svc, t.GetSlot(), "", now)); err != nil {
			return err
		}
		stats.created++
	}
	// Finished tasks hold their slots, after the running ones so that a slot
	// held by both keeps the running one.
	for _, t := range tasks {
		if !finished(t) {
			continue
		}
		if t.GetSlot() > want || t.GetSlot() == 0 || live[t.GetSlot()] {
			if err := retire(tx, t, stats); err != nil {
				return err
			}
			continue
		}
		live[t.GetSlot()] = true
	}
	for slot := uint64(1); slot <= want; slot++ {
		if live[slot] {
			continue
		}
		if err := tx.CreateTask(newTask(svc, slot, "", now)); err != nil {
			return err
		}
		stats.created++
	}
	return nil
}

func sortedKeys[K uint64 | string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

// decide applies a service's restart policy to an ended task of a slot (or
// node): whether it is replaced and, if its restart delay still runs, when.
// Attempts are counted from the slot's history (the tasks kept by
// task_history_retention), within the policy's window.
func decide(svc *objectv1.Service, t *objectv1.Task, slotTasks []*objectv1.Task, now time.Time) (bool, time.Time) {
	if !restarts(svc, t) {
		return false, time.Time{}
	}
	policy := svc.GetSpec().GetTask().GetRestart()
	if limit := policy.GetMaxAttempts(); limit > 0 {
		window := policy.GetWindow().AsDuration()
		var n uint64
		for _, h := range slotTasks {
			same := h.GetSlot() == t.GetSlot() && (t.GetSlot() != 0 || h.GetNodeId() == t.GetNodeId())
			if !same || h.Id == t.Id || !ended(h) || h.GetDesiredState() != objectv1.TaskState_TASK_STATE_SHUTDOWN ||
				h.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_ORPHANED {
				continue // not a restart of this slot
			}
			if window > 0 && now.Sub(h.GetStatus().GetTimestamp().AsTime()) > window {
				continue
			}
			n++
		}
		if n >= limit {
			return false, time.Time{}
		}
	}
	if delay := policy.GetDelay().AsDuration(); delay > 0 {
		if at := t.GetStatus().GetTimestamp().AsTime().Add(delay); now.Before(at) {
			return true, at
		}
	}
	return true, time.Time{}
}

// restarts applies the restart condition to an ended task.
func restarts(svc *objectv1.Service, t *objectv1.Task) bool {
	switch svc.GetSpec().GetTask().GetRestart().GetCondition() {
	case objectv1.RestartCondition_RESTART_CONDITION_NONE:
		return false
	case objectv1.RestartCondition_RESTART_CONDITION_ON_FAILURE:
		return t.GetStatus().GetState() != objectv1.TaskState_TASK_STATE_COMPLETE
	default:
		return true
	}
}

// settleEnded records the decision on an ended task: replaced (again), it is
// desired SHUTDOWN and stays only as history; let end, it is desired
// COMPLETE and keeps its slot (see finished).
func settleEnded(tx *state.Tx, t *objectv1.Task, again bool) error {
	next := proto.Clone(t).(*objectv1.Task)
	next.DesiredState = objectv1.TaskState_TASK_STATE_COMPLETE
	if again {
		next.DesiredState = objectv1.TaskState_TASK_STATE_SHUTDOWN
	}
	return tx.UpdateTask(next)
}

func refresh(t *objectv1.Task, svc *objectv1.Service) *objectv1.Task {
	next := proto.Clone(t).(*objectv1.Task)
	next.Spec = svc.GetSpec().GetTask()
	next.SpecVersion = svc.GetSpecVersion()
	next.ServiceAnnotations = svc.GetSpec().GetAnnotations()
	next.Endpoint = svc.GetSpec().GetEndpoint()
	return next
}

func newTask(svc *objectv1.Service, slot uint64, nodeID string, now time.Time) *objectv1.Task {
	return &objectv1.Task{
		Id:                 ids.New(),
		ServiceId:          svc.Id,
		Slot:               slot,
		NodeId:             nodeID,
		Spec:               svc.GetSpec().GetTask(),
		SpecVersion:        svc.GetSpecVersion(),
		ServiceAnnotations: svc.GetSpec().GetAnnotations(),
		Endpoint:           svc.GetSpec().GetEndpoint(),
		DesiredState:       objectv1.TaskState_TASK_STATE_RUNNING,
		Status: &objectv1.TaskStatus{
			Timestamp: timestamppb.New(now),
			State:     objectv1.TaskState_TASK_STATE_PENDING,
			Message:   PendingMessage,
		},
	}
}
