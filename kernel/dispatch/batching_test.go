package dispatch

import (
	"log/slog"
	"testing"
	"time"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// TestPartialBatchesCountFromTheLastSend: a lone assignment change after a
// quiet spell is due at once; one soon after a send waits until the
// interval since that send; a full batch never waits.
func TestPartialBatchesCountFromTheLastSend(t *testing.T) {
	t0 := time.Now()
	s := &session{}
	change := &workerv1.AssignmentChange{Task: &objectv1.Task{Id: "t"}}
	if s.flushDue(t0) {
		t.Fatal("nothing pending, yet due")
	}
	s.queue(change)
	if !s.flushDue(t0) {
		t.Error("a lone change after a quiet spell is not due at once")
	}
	s.lastFlush = t0
	if s.flushDue(t0.Add(maxBatchInterval / 2)) {
		t.Error("a partial batch half an interval after a send is due")
	}
	if !s.flushDue(t0.Add(maxBatchInterval)) {
		t.Error("a partial batch an interval after a send is not due")
	}
	for range maxBatch {
		s.queue(change)
	}
	if !s.flushDue(t0) {
		t.Error("a full batch is not due at once")
	}
}

// TestStatusWritesCountFromTheLastWrite: the same pacing for status reports.
func TestStatusWritesCountFromTheLastWrite(t *testing.T) {
	b := newStatusBatcher(nil, slog.New(slog.DiscardHandler))
	report := func(id string) {
		t.Helper()
		if err := b.add("n1", []*workerv1.TaskStatusUpdate{{TaskId: id, Status: &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_RUNNING}}}); err != nil {
			t.Fatal(err)
		}
	}
	report("a")
	if got := b.take(false); len(got) != 1 {
		t.Fatalf("a lone report after a quiet spell: took %d, want it at once", len(got))
	}
	report("b")
	if got := b.take(false); got != nil {
		t.Fatalf("a report right after a write: took %d, want it held for the interval", len(got))
	}
	b.last = time.Now().Add(-maxBatchInterval)
	if got := b.take(false); len(got) != 1 {
		t.Fatalf("an interval after the last write: took %d, want 1", len(got))
	}
}
