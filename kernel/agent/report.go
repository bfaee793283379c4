package agent

import (
	"context"
	"slices"
	"sync"
	"time"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// reporter gathers task status changes into batched StatusReports.
//
// It keeps the latest status of every task the agent knows, and the set of
// tasks whose latest status is not sent yet, in the order they changed. A
// task that changes again before it is sent is sent once, with its latest
// status: states only move forward, so the manager loses nothing it could
// act on, and a burst of changes (a node starting a hundred tasks) costs a
// few messages and a few Raft writes, not one per transition. Changes made
// while disconnected wait in the same set, one entry per task, so memory is
// bounded by the number of tasks.
//
// report and forget are called by task workers; run is called by one
// session at a time.
type reporter struct {
	batchSize int
	interval  time.Duration
	wake      chan struct{} // size 1: one wake-up covers a burst

	mu      sync.Mutex
	latest  map[string]*objectv1.TaskStatus
	order   []string        // pending task IDs, oldest first; may hold stale IDs that pending lacks
	pending map[string]bool // task IDs whose latest status is not sent
	// onStatus is Config.OnStatus; called under mu, so in report order.
	onStatus func(taskID string, st *objectv1.TaskStatus)
}

func newReporter(batchSize int, interval time.Duration) *reporter {
	return &reporter{
		batchSize: batchSize,
		interval:  interval,
		wake:      make(chan struct{}, 1),
		latest:    map[string]*objectv1.TaskStatus{},
		pending:   map[string]bool{},
	}
}

// report records a task's new status for sending. The status must not be
// modified afterwards.
func (r *reporter) report(taskID string, st *objectv1.TaskStatus) {
	r.mu.Lock()
	if r.onStatus != nil {
		r.onStatus(taskID, st)
	}
	r.latest[taskID] = st
	if !r.pending[taskID] {
		r.pending[taskID] = true
		r.order = append(r.order, taskID)
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// forget drops a task the agent no longer holds: the manager deleted it,
// so there is nothing left to tell it.
func (r *reporter) forget(taskID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.latest, taskID)
	delete(r.pending, taskID)
}

// resync marks every known task's latest status for sending, so that a
// manager the agent just connected to (maybe a new leader, which may have
// missed reports sent to the old one) catches up. Tasks go in ID order,
// which keeps the first reports of a session deterministic.
func (r *reporter) resync() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.order = r.order[:0]
	clear(r.pending)
	for id := range r.latest {
		r.order = append(r.order, id)
		r.pending[id] = true
	}
	slices.Sort(r.order)
}

// take removes and returns the next batch of pending updates: a full batch
// whenever one is pending, and whatever is pending (up to a batch) when
// flush is set. It returns nil when there is nothing to send yet.
func (r *reporter) take(flush bool) []*workerv1.TaskStatusUpdate {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.pending)
	if n == 0 || (n < r.batchSize && !flush) {
		if n == 0 {
			r.order = r.order[:0] // only stale IDs are left
		}
		return nil
	}
	out := make([]*workerv1.TaskStatusUpdate, 0, min(n, r.batchSize))
	i := 0
	for ; i < len(r.order) && len(out) < r.batchSize; i++ {
		id := r.order[i]
		if !r.pending[id] {
			continue // forgotten, or sent since it was queued
		}
		delete(r.pending, id)
		out = append(out, &workerv1.TaskStatusUpdate{TaskId: id, Status: r.latest[id]})
	}
	r.order = r.order[i:]
	return out
}

// run sends the resync, then every change, in reports of up to batchSize
// updates: a full batch goes at once, a partial one once interval has
// passed since the last report (at once after a quiet interval). It returns
// nil when ctx ends, or send's error.
// Reports in flight when a session breaks are not lost: the next session's
// resync sends them again.
func (r *reporter) run(ctx context.Context, send func(*workerv1.StatusReport) error) error {
	r.resync()
	flush := true // the resync goes out at once: the manager must catch up
	timer := time.NewTimer(r.interval)
	timer.Stop()
	defer timer.Stop()
	armed := false
	var last time.Time // when the last report went out
	for {
		for {
			batch := r.take(flush)
			if batch == nil {
				break
			}
			if err := send(&workerv1.StatusReport{Updates: batch}); err != nil {
				return err
			}
			last = time.Now()
		}
		flush = false
		if !armed && r.hasPending() {
			// The interval counts from the last report: a change after a
			// quiet interval goes at once (a lone task starting is not held
			// back), changes soon after it wait, so partial reports still
			// go at most once per interval.
			wait := r.interval - time.Since(last)
			if wait <= 0 {
				flush = true
				continue
			}
			timer.Reset(wait)
			armed = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		case <-timer.C:
			armed, flush = false, true
		}
	}
}

func (r *reporter) hasPending() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending) > 0
}
