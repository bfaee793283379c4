package orchestrator

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// A stop-first replacement does not start before the task it replaces has
// stopped, as in Docker swarm mode (where the restart supervisor's
// DelayStart holds the new task until the old one is down). Both are in the
// write that starts the batch: the old task is told to stop, and its slot's
// (node's) new task is created with desired state READY. No other stage
// acts on a READY task (placement, the allocator and the dispatcher handle
// tasks desired RUNNING): it stays PENDING, on no node. A later pass moves
// it to RUNNING once no task of its slot is still stopping, that is once
// each has ended (its node reports it ended, which a worker does only after
// the executor released the task's network attachments and published
// ports), was deleted, or is on a lost node (down, or removed). Without
// this, the new task could be placed on the old one's node and prepared
// while the old one still holds the published port, the volume or the
// name they share, and fail.
//
// The wait is bounded as in swarm: holdTimeout after the longest stop grace
// period of the tasks it waits for, the new task starts anyway (a node that
// heartbeats but never reports the stop must not keep the slot empty
// forever).
//
// The state says all of it (the READY task, the slot's stopping tasks, the
// READY task's created_at): a new leader carries on. Start-first
// replacements and the replacements of tasks that ended (restart policy),
// of lost nodes' tasks and of drained nodes' tasks are created RUNNING, as
// before.

// holdTimeout is how long, beyond the stop grace period, a held task waits
// for the tasks it replaces to stop (swarm's is a minute).
const holdTimeout = time.Minute

// defaultStopGrace is the stop grace period a worker applies to a task
// whose spec sets none (kernel/agent's default).
const defaultStopGrace = 10 * time.Second

// heldMessage is the status message of a task held for the tasks its slot
// still stops.
func heldMessage(stopping []*objectv1.Task) string {
	return fmt.Sprintf("waiting for task %s to stop", stopping[0].Id)
}

// stopping indexes, lazily, the tasks of one service that their nodes are
// still stopping, by slotKey: told not to run, placed, not ended, on a node
// that is not lost. It is built on first use, after the pass's retirements.
type stopping struct {
	tx    *state.Tx
	svcID string
	by    map[string][]*objectv1.Task
}

func (s *stopping) of(key string) []*objectv1.Task {
	if s.by == nil {
		s.by = map[string][]*objectv1.Task{}
		for _, t := range s.tx.TasksByService(s.svcID) {
			if wanted(t) || !placed(t) || ended(t) || nodeLost(s.tx.ReadTx, t.GetNodeId()) {
				continue
			}
			s.by[slotKey(t)] = append(s.by[slotKey(t)], t)
		}
	}
	return s.by[key]
}

// holdUntil is when a task created at created stops waiting for the tasks
// of its slot still stopping, whether they ended or not.
func holdUntil(created time.Time, stopping []*objectv1.Task) time.Time {
	var grace time.Duration
	for _, t := range stopping {
		g := defaultStopGrace
		if d := t.GetSpec().GetContainer().GetStopGracePeriod(); d != nil && d.AsDuration() >= 0 {
			g = d.AsDuration()
		}
		grace = max(grace, g)
	}
	return created.Add(grace + holdTimeout)
}

// newHeld returns a stop-first replacement for a slot (slot 0 and nodeID,
// for a global service): held (desired READY) while the slot has tasks
// still stopping, desired RUNNING otherwise.
func newHeld(svc *objectv1.Service, slot uint64, nodeID string, now time.Time, st *stopping, stats *passStats) *objectv1.Task {
	t := newTask(svc, slot, nodeID, now)
	if prev := st.of(slotKey(t)); len(prev) > 0 {
		t.DesiredState = objectv1.TaskState_TASK_STATE_READY
		t.Status.Message = heldMessage(prev)
		stats.held++
		stats.wake(svc.Id, holdUntil(now, prev))
	}
	return t
}

// release starts the held tasks of a service (one per slot) whose slot has
// no task still stopping, or that waited for holdTimeout: their desired
// state becomes RUNNING and placement takes them. The others wait, and the
// pass wakes when their wait runs out.
func release(tx *state.Tx, svc *objectv1.Service, held []*objectv1.Task, now time.Time, st *stopping, stats *passStats) error {
	for _, h := range held {
		if prev := st.of(slotKey(h)); len(prev) > 0 {
			if at := holdUntil(h.GetMeta().GetCreatedAt().AsTime(), prev); now.Before(at) {
				stats.wake(svc.Id, at)
				continue
			}
			stats.unconfirmed++
		}
		// The pass may have refreshed it: start from this transaction's
		// version.
		next := proto.Clone(tx.Task(h.Id)).(*objectv1.Task)
		next.DesiredState = objectv1.TaskState_TASK_STATE_RUNNING
		next.Status = &objectv1.TaskStatus{
			Timestamp: timestamppb.New(now),
			State:     objectv1.TaskState_TASK_STATE_PENDING,
			Message:   PendingMessage,
		}
		stats.released++
		if err := tx.UpdateTask(next); err != nil {
			return err
		}
	}
	return nil
}

// wanted reports whether a task is meant to run: desired RUNNING, or held
// (desired READY) until the tasks it replaces have stopped.
func wanted(t *objectv1.Task) bool {
	d := t.GetDesiredState()
	return d == objectv1.TaskState_TASK_STATE_RUNNING || d == objectv1.TaskState_TASK_STATE_READY
}

// isHeld reports whether a task is held (desired READY).
func isHeld(t *objectv1.Task) bool {
	return t.GetDesiredState() == objectv1.TaskState_TASK_STATE_READY
}
