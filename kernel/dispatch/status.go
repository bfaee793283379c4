package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// maxStatusWrites bounds concurrent status writes: the proposer packs them
// into shared entries, so a few in flight keep the pipeline full under
// thousands of reports per second without unbounded goroutines.
const maxStatusWrites = 4

type pendingStatus struct {
	nodeID string
	status *objectv1.TaskStatus
}

// statusBatcher gathers workers' task status reports into batched writes.
type statusBatcher struct {
	raft    Raft
	log     *slog.Logger
	wake    chan struct{}
	written func(n int) // optional: reports committed per write

	mu      sync.Mutex
	pending map[string]pendingStatus // by task ID; the latest report wins
	// last is when a batch was last taken for writing: a partial batch
	// waits until maxBatchInterval has passed since then (at once after a
	// quiet spell, at most one partial write per interval under load).
	last time.Time
}

func newStatusBatcher(r Raft, logger *slog.Logger) *statusBatcher {
	return &statusBatcher{raft: r, log: logger, wake: make(chan struct{}, 1), pending: map[string]pendingStatus{}}
}

// validStatus checks a worker-reported status: a worker may report the
// states from ACCEPTED on, except the kernel's own REMOVE.
func validStatus(u *workerv1.TaskStatusUpdate) error {
	var fe sdk.FieldErrors
	if u.GetTaskId() == "" {
		fe.Add("task_id", "is required")
	}
	st := u.GetStatus().GetState()
	if u.GetStatus() == nil {
		fe.Add("status", "is required")
	} else if _, known := objectv1.TaskState_name[int32(st)]; !known || st < objectv1.TaskState_TASK_STATE_ACCEPTED || st == objectv1.TaskState_TASK_STATE_REMOVE {
		fe.Add("status.state", "must be a worker state (accepted to orphaned, not remove), got %d", st)
	}
	if len(u.GetStatus().GetMessage()) > 4096 || len(u.GetStatus().GetErr()) > 4096 {
		fe.Add("status.message", "must be at most 4096 bytes")
	}
	return fe.Err()
}

// add queues a worker's reports. Malformed reports fail the whole message
// (the worker is misbehaving); reports about other nodes' tasks are dropped
// at write time, where the task's node is known.
func (b *statusBatcher) add(nodeID string, updates []*workerv1.TaskStatusUpdate) error {
	for i, u := range updates {
		if err := validStatus(u); err != nil {
			return fmt.Errorf("status report update %d: %w", i, err)
		}
	}
	b.mu.Lock()
	for _, u := range updates {
		if cur, ok := b.pending[u.TaskId]; ok && cur.status.GetState() > u.Status.GetState() {
			continue
		}
		b.pending[u.TaskId] = pendingStatus{nodeID: nodeID, status: u.Status}
	}
	full := len(b.pending) >= maxBatch
	b.mu.Unlock()
	if full {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

func (b *statusBatcher) take(force bool) map[string]pendingStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.pending) == 0 || (!force && len(b.pending) < maxBatch && time.Since(b.last) < maxBatchInterval) {
		return nil
	}
	b.last = time.Now()
	out := b.pending
	b.pending = map[string]pendingStatus{}
	return out
}

func (b *statusBatcher) run(ctx context.Context) error {
	sem := make(chan struct{}, maxStatusWrites)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(flushTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-b.wake:
		case <-tick.C:
		}
		batch := b.take(false)
		if batch == nil {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := b.write(ctx, batch); err != nil && ctx.Err() == nil {
				b.log.Warn("writing task status reports", "reports", len(batch), "error", err)
			}
		}()
	}
}

// write commits a batch, retrying when a concurrent write conflicts.
func (b *statusBatcher) write(ctx context.Context, batch map[string]pendingStatus) error {
	var err error
	for range 5 {
		n := 0
		err = b.raft.Update(ctx, func(tx *state.Tx) error {
			n = 0
			now := tx.Now()
			for id, p := range batch {
				t := tx.Task(id)
				if t == nil || t.GetNodeId() != p.nodeID {
					continue // deleted meanwhile, or not this node's to report
				}
				cur := t.GetStatus()
				if p.status.GetState() < cur.GetState() || proto.Equal(cur, p.status) {
					continue // states only move forward
				}
				next := proto.Clone(t).(*objectv1.Task)
				next.Status = proto.Clone(p.status).(*objectv1.TaskStatus)
				if next.Status.Timestamp == nil {
					next.Status.Timestamp = timestamppb.New(now)
				}
				if err := tx.UpdateTask(next); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err == nil && b.written != nil {
			b.written(n)
		}
		if err == nil || !errors.Is(err, sdk.ErrFailedPrecondition) {
			return err
		}
	}
	return err
}
