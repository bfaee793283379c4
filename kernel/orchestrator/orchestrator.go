// Package orchestrator reconciles services with their tasks on the leader:
// one task per slot for replicated services, one per eligible node for
// global ones, tasks run to completion for jobs (job.go), replacing ended
// tasks per the restart policy and removing tasks of removed or scaled-down
// services, replacing the tasks of lost (down or removed) and drained nodes,
// and rolling spec changes out (update.go).
//
// It is driven by store watch events and restartable: Run rebuilds
// everything from a view of the store. All the changes of one pass, however
// many services and tasks they touch, go into one transaction, which the
// batched proposer commits as one or a few Raft entries: scaling to 10,000
// replicas is not 10,000 writes.
//
// Where things are: watch.go gathers the events into passes; this file
// runs a pass over the dirty services; slot.go keeps one task per slot or
// node, for replicated.go and global.go; job.go runs jobs; restart.go holds
// the restart policy, update.go the rolling update, hold.go the stop-first
// hold, history.go the pruning of old tasks; node.go and task.go are what
// the others ask of nodes and tasks.
package orchestrator

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

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

// reconcileService brings one service's tasks in line, by its mode, and
// prunes its history; the tasks of a removed service are deleted, or told to
// stop where their nodes still run them.
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
