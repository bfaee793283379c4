package orchestrator

import (
	"sort"
	"time"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// rollingUpdate replaces the placed tasks whose spec is out of date, a few at
// a time, as the service's update config says: at most parallelism slots
// (0: all) are being replaced at once, and after a batch is running the
// next waits the update delay. A replacement retires the old task and
// creates its successor in the same write (stop-first: the old task is told
// to stop as the new one is placed).
//
// stale are the slots' (or nodes', for global services) out-of-date tasks,
// still desired running; current are the up-to-date tasks desired running.
// It returns the tasks it retired, whose slots need a new task.
//
// TODO(#4): start-first order, the monitor period and failure actions.
func rollingUpdate(tx *state.Tx, svc *objectv1.Service, stale, current []*objectv1.Task, now time.Time, stats *passStats) ([]*objectv1.Task, error) {
	if len(stale) == 0 {
		return nil, nil
	}
	cfg := svc.GetSpec().GetUpdate()
	// Replacements under way: up-to-date tasks not running yet.
	inFlight := 0
	var lastUp time.Time
	for _, t := range current {
		if t.GetStatus().GetState() < objectv1.TaskState_TASK_STATE_RUNNING {
			inFlight++
		} else if ts := t.GetStatus().GetTimestamp().AsTime(); ts.After(lastUp) {
			lastUp = ts
		}
	}
	allowed := len(stale)
	if p := int(cfg.GetParallelism()); p > 0 {
		allowed = p - inFlight
	}
	if allowed <= 0 {
		return nil, nil
	}
	if delay := cfg.GetDelay().AsDuration(); delay > 0 && inFlight == 0 && !lastUp.IsZero() && now.Before(lastUp.Add(delay)) {
		stats.wake(svc.Id, lastUp.Add(delay))
		return nil, nil
	}
	sort.Slice(stale, func(i, j int) bool {
		if stale[i].GetSlot() != stale[j].GetSlot() {
			return stale[i].GetSlot() < stale[j].GetSlot()
		}
		return stale[i].GetNodeId() < stale[j].GetNodeId()
	})
	retired := stale[:min(allowed, len(stale))]
	for _, t := range retired {
		if err := retire(tx, t, stats); err != nil {
			return nil, err
		}
	}
	return retired, nil
}
