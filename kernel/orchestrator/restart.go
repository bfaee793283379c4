package orchestrator

import (
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// decide applies a service's restart policy to an ended task of a slot (or
// node): whether it is replaced and, if its restart delay still runs, when.
// Attempts are counted from the slot's history (the tasks kept by
// task_history_retention), within the policy's window.
func decide(svc *objectv1.Service, t *objectv1.Task, slotTasks []*objectv1.Task, now time.Time) (bool, time.Time) {
	if !restarts(svc, t) {
		return false, time.Time{}
	}
	policy := svc.GetSpec().GetTask().GetRestart()
	if limit := policy.GetMaxAttempts(); limit > 0 && attempts(t, slotTasks, policy.GetWindow().AsDuration(), now) >= limit {
		return false, time.Time{}
	}
	if delay := policy.GetDelay().AsDuration(); delay > 0 {
		if at := t.GetStatus().GetTimestamp().AsTime().Add(delay); now.Before(at) {
			return true, at
		}
	}
	return true, time.Time{}
}

// attempts counts the restarts of t's slot (node) before t: the other tasks
// of the slot that ended and were replaced (desired SHUTDOWN, not ORPHANED
// with their node), within window of now (0: ever).
func attempts(t *objectv1.Task, slotTasks []*objectv1.Task, window time.Duration, now time.Time) uint64 {
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
	return n
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
