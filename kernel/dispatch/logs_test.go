package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/sdk"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// logCall runs Dispatcher.Logs in the background, recording what it emits.
type logCall struct {
	mu     sync.Mutex
	events []LogEvent
	gate   chan struct{} // when set, each emit waits for a value
	done   chan error
	cancel context.CancelFunc
}

func startLogs(e *env, q LogQuery, gated bool) *logCall {
	ctx, cancel := context.WithCancel(context.Background())
	c := &logCall{done: make(chan error, 1), cancel: cancel}
	if gated {
		c.gate = make(chan struct{})
	}
	go func() {
		c.done <- e.d.Logs(ctx, q, func(ev LogEvent) error {
			if c.gate != nil {
				<-c.gate
			}
			c.mu.Lock()
			c.events = append(c.events, ev)
			c.mu.Unlock()
			return nil
		})
	}()
	e.t.Cleanup(cancel)
	return c
}

func (c *logCall) snapshot() []LogEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]LogEvent(nil), c.events...)
}

// subscription waits for the LogSubscription p received.
func subscription(t *testing.T, p *fakePeer) *workerv1.LogSubscription {
	t.Helper()
	var sub *workerv1.LogSubscription
	eventually(t, "a log subscription", func() bool {
		for _, m := range p.messages() {
			if s := m.GetLogSubscription(); s != nil {
				sub = s
				return true
			}
		}
		return false
	})
	return sub
}

// controls sums the credit p was given and says whether it was cancelled.
func controls(p *fakePeer, subID string) (credit int, cancelled bool) {
	for _, m := range p.messages() {
		if c := m.GetLogControl(); c != nil && c.GetSubscriptionId() == subID {
			credit += int(c.GetCredit())
			cancelled = cancelled || c.GetCancel()
		}
	}
	return credit, cancelled
}

func logMsg(b *workerv1.LogBatch) *workerv1.WorkerMessage {
	return &workerv1.WorkerMessage{Msg: &workerv1.WorkerMessage_Logs{Logs: b}}
}

func lines(task string, from, to int) []*workerv1.LogLine {
	var out []*workerv1.LogLine
	for i := from; i <= to; i++ {
		out = append(out, &workerv1.LogLine{TaskId: task, Stream: workerv1.LogStream_LOG_STREAM_STDOUT, Data: fmt.Appendf(nil, "line %d", i)})
	}
	return out
}

func TestLogsFromNodesInOrder(t *testing.T) {
	e := newEnv(t)
	s1, p1 := e.open("n1")
	s2, p2 := e.open("n2")
	call := startLogs(e, LogQuery{Tasks: map[string][]string{"n1": {"t1"}, "n2": {"t2", "t3"}, "gone": {"t9"}}, Tail: 10}, false)

	sub1, sub2 := subscription(t, p1), subscription(t, p2)
	if sub1.GetId() == sub2.GetId() || sub1.GetCredit() != logCredit || sub1.GetTail() != 10 {
		t.Fatalf("subscriptions %v and %v: want an ID per node, credit %d, tail 10", sub1, sub2, logCredit)
	}
	if got := strings.Join(sub1.GetTaskIds(), ","); got != "t1" {
		t.Errorf("n1 was asked for %s, want only its own t1", got)
	}
	if got := strings.Join(sub2.GetTaskIds(), ","); got != "t2,t3" {
		t.Errorf("n2 was asked for %s, want t2,t3", got)
	}
	id := sub1.GetId()

	// The first, empty answer gets its credit back at once.
	if err := s1.Handle(logMsg(&workerv1.LogBatch{SubscriptionId: id})); err != nil {
		t.Fatal(err)
	}
	eventually(t, "credit for the empty batch", func() bool { c, _ := controls(p1, id); return c == 1 })
	for i := range 3 {
		if err := s1.Handle(logMsg(&workerv1.LogBatch{SubscriptionId: id, Lines: lines("t1", 10*i+1, 10*i+10)})); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "credit for the emitted batches", func() bool { c, _ := controls(p1, id); return c == 4 })
	// n2 cannot answer for n1's part.
	if err := s2.Handle(logMsg(&workerv1.LogBatch{SubscriptionId: id, Lines: lines("t2", 1, 2)})); err != nil {
		t.Fatal(err)
	}
	if err := s2.Handle(logMsg(&workerv1.LogBatch{SubscriptionId: sub2.GetId(), Lines: lines("t2", 1, 2),
		Errors: []*workerv1.TaskLogError{{TaskId: "t3", Error: "not found"}}, Done: true})); err != nil {
		t.Fatal(err)
	}
	if err := s1.Handle(logMsg(&workerv1.LogBatch{SubscriptionId: id, Lines: lines("t1", 31, 31), Done: true})); err != nil {
		t.Fatal(err)
	}
	if err := <-call.done; err != nil {
		t.Fatalf("Logs = %v", err)
	}

	var t1 []string
	var gone, t3 bool
	t2 := 0
	for _, ev := range call.snapshot() {
		for _, l := range ev.Lines {
			switch l.GetTaskId() {
			case "t1":
				t1 = append(t1, string(l.GetData()))
			case "t2":
				t2++
			}
		}
		for _, te := range ev.TaskErrors {
			t3 = t3 || (te.GetTaskId() == "t3" && ev.NodeID == "n2")
		}
		if ev.Err != nil {
			gone = ev.NodeID == "gone" && errors.Is(ev.Err, sdk.ErrUnavailable) && strings.Contains(ev.Err.Error(), "gone")
		}
	}
	if len(t1) != 31 || t1[0] != "line 1" || t1[30] != "line 31" {
		t.Errorf("t1's lines = %q, want line 1 to line 31 in order", t1)
	}
	if t2 != 2 {
		t.Errorf("%d lines of t2, want the 2 n2 sent for its own part", t2)
	}
	if !t3 || !gone {
		t.Errorf("task error of t3 seen: %v; unconnected node named: %v", t3, gone)
	}
	if _, cancelled := controls(p1, id); cancelled {
		t.Error("a node that finished was cancelled")
	}
}

// TestLogsMoreTasks: tasks added while a subscription runs are asked for
// in a new part, from their start; the call ends once More is closed and
// every part is done.
func TestLogsMoreTasks(t *testing.T) {
	e := newEnv(t)
	s1, p1 := e.open("n1")
	more := make(chan map[string][]string)
	call := startLogs(e, LogQuery{Tasks: map[string][]string{"n1": {"t1"}}, Follow: true, Tail: 5, More: more}, false)
	first := subscription(t, p1)
	if err := s1.Handle(logMsg(&workerv1.LogBatch{SubscriptionId: first.GetId(), Done: true})); err != nil {
		t.Fatal(err)
	}
	more <- map[string][]string{"n1": {"t5"}}
	var second *workerv1.LogSubscription
	eventually(t, "a second subscription", func() bool {
		for _, m := range p1.messages() {
			if s := m.GetLogSubscription(); s != nil && s.GetId() != first.GetId() {
				second = s
				return true
			}
		}
		return false
	})
	if second.GetTail() != -1 || !second.GetFollow() || strings.Join(second.GetTaskIds(), ",") != "t5" {
		t.Errorf("second subscription %v, want t5 from its start, followed", second)
	}
	if err := s1.Handle(logMsg(&workerv1.LogBatch{SubscriptionId: second.GetId(), Lines: lines("t5", 1, 1), Done: true})); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-call.done:
		t.Fatalf("Logs returned %v while More was open", err)
	default:
	}
	close(more)
	if err := <-call.done; err != nil {
		t.Fatalf("Logs = %v", err)
	}
	if ev := call.snapshot(); len(ev) != 1 || len(ev[0].Lines) != 1 || ev[0].Lines[0].GetTaskId() != "t5" {
		t.Errorf("events %v, want t5's line", ev)
	}
}

// stamped is a line of task at second sec (and nanosecond ns) of a fixed
// minute.
func stamped(task string, sec, ns int, data string) *workerv1.LogLine {
	return &workerv1.LogLine{TaskId: task, Stream: workerv1.LogStream_LOG_STREAM_STDOUT, Data: []byte(data),
		Time: timestamppb.New(time.Date(2026, 3, 1, 12, 0, sec, ns, time.UTC))}
}

func emittedLines(events []LogEvent) []string {
	var out []string
	for _, ev := range events {
		for _, l := range ev.Lines {
			out = append(out, l.GetTaskId()+":"+string(l.GetData()))
		}
	}
	return out
}

// TestLogsFollowSendsAsLinesCome: a followed part's lines reach the
// client while it still runs, and a node with nothing to say holds the
// others back no longer than the merge window, however busy the machine
// (the deadline is generous; what is checked is that they come at all
// before the subscription ends).
func TestLogsFollowSendsAsLinesCome(t *testing.T) {
	e := newEnv(t)
	s1, p1 := e.open("n1")
	_, p2 := e.open("n2")
	call := startLogs(e, LogQuery{Tasks: map[string][]string{"n1": {"t1"}, "n2": {"t2"}}, Follow: true, Tail: 1}, false)
	id := subscription(t, p1).GetId()
	subscription(t, p2) // n2 stays silent: not even its first answer
	if err := s1.Handle(logMsg(&workerv1.LogBatch{SubscriptionId: id, Lines: lines("t1", 9, 9)})); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the tail line emitted", func() bool { return len(emittedLines(call.snapshot())) == 1 })
	eventually(t, "its credit back", func() bool { c, _ := controls(p1, id); return c == 1 })
	if err := s1.Handle(logMsg(&workerv1.LogBatch{SubscriptionId: id, Lines: lines("t1", 10, 10)})); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new line emitted", func() bool { return len(emittedLines(call.snapshot())) == 2 })
	if got := strings.Join(emittedLines(call.snapshot()), ","); got != "t1:line 9,t1:line 10" {
		t.Errorf("emitted %s, want t1:line 9,t1:line 10", got)
	}
	select {
	case err := <-call.done:
		t.Fatalf("a follow ended by itself: %v", err)
	default:
	}
}

// TestLogsMergedByTime: lines of tasks on several nodes go to the client
// in time order, each task's lines in their order even when its node's
// clock stepped back, then the task errors.
func TestLogsMergedByTime(t *testing.T) {
	e := newEnv(t)
	// No window: the batches wait for each other whatever the machine's
	// pace, and go together once both nodes sent theirs.
	e.d.logs.mergeWindow = time.Hour
	s1, p1 := e.open("n1")
	s2, p2 := e.open("n2")
	call := startLogs(e, LogQuery{Tasks: map[string][]string{"n1": {"a", "b"}, "n2": {"c"}}, Tail: -1}, false)
	id1, id2 := subscription(t, p1).GetId(), subscription(t, p2).GetId()
	// n1's batch holds a's lines, then b's, as its readers queued them;
	// b's clock steps back between b2 and b3.
	if err := s1.Handle(logMsg(&workerv1.LogBatch{SubscriptionId: id1, Lines: []*workerv1.LogLine{
		stamped("a", 1, 0, "a1"), stamped("a", 4, 0, "a4"),
		stamped("b", 2, 0, "b2"), stamped("b", 1, 500, "b3"), stamped("b", 5, 0, "b5"),
	}})); err != nil {
		t.Fatal(err)
	}
	if err := s2.Handle(logMsg(&workerv1.LogBatch{SubscriptionId: id2, Lines: []*workerv1.LogLine{
		stamped("c", 0, 0, "c0"), stamped("c", 3, 0, "c3"),
	}, Errors: []*workerv1.TaskLogError{{TaskId: "c", Error: "rotated away"}}, Done: true})); err != nil {
		t.Fatal(err)
	}
	if err := s1.Handle(logMsg(&workerv1.LogBatch{SubscriptionId: id1, Done: true})); err != nil {
		t.Fatal(err)
	}
	if err := <-call.done; err != nil {
		t.Fatalf("Logs = %v", err)
	}
	events := call.snapshot()
	want := "c:c0,a:a1,b:b2,b:b3,c:c3,a:a4,b:b5"
	if got := strings.Join(emittedLines(events), ","); got != want {
		t.Errorf("lines in the order %s, want %s", got, want)
	}
	last := events[len(events)-1]
	if len(last.TaskErrors) != 1 || last.NodeID != "n2" || len(last.Lines) != 0 {
		t.Errorf("last event %+v, want c's error from n2 after every line", last)
	}
}

func TestMergeLinesBoundsEvents(t *testing.T) {
	var events []logEvent
	for i := range 3 {
		events = append(events, logEvent{LogEvent: LogEvent{NodeID: fmt.Sprint("n", i), Lines: lines(fmt.Sprint("t", i), 1, maxLogBatchLines)}})
	}
	big := logEvent{LogEvent: LogEvent{NodeID: "n9", Lines: []*workerv1.LogLine{
		{TaskId: "big", Data: make([]byte, maxLogBatchBytes-10)}, {TaskId: "big", Data: make([]byte, 20)},
	}}}
	var got []LogEvent
	if err := emitMerged(append(events, big), func(ev LogEvent) error { got = append(got, ev); return nil }); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, ev := range got {
		size := 0
		for _, l := range ev.Lines {
			size += len(l.GetData())
		}
		if len(ev.Lines) > maxLogBatchLines || size > maxLogBatchBytes {
			t.Errorf("an event of %d lines, %d bytes", len(ev.Lines), size)
		}
		if ev.NodeID != "" {
			t.Errorf("an event of several nodes' lines names node %s", ev.NodeID)
		}
		total += len(ev.Lines)
	}
	if total != 3*maxLogBatchLines+2 {
		t.Errorf("%d lines emitted, want %d", total, 3*maxLogBatchLines+2)
	}
}

func TestLogsRefuseWhatWasNotAsked(t *testing.T) {
	e := newEnv(t)
	s1, p1 := e.open("n1")
	s2, p2 := e.open("n2")
	call := startLogs(e, LogQuery{Tasks: map[string][]string{"n1": {"t1"}, "n2": {"t2"}}, Follow: true}, true)
	id := subscription(t, p1).GetId()
	id2 := subscription(t, p2).GetId()

	// n1 sends lines of n2's task: its part ends, its readers are cancelled.
	if err := s1.Handle(logMsg(&workerv1.LogBatch{SubscriptionId: id, Lines: lines("t2", 1, 1)})); err != nil {
		t.Fatalf("Handle = %v; logs must never end the session", err)
	}
	call.gate <- struct{}{}
	eventually(t, "n1's part refused", func() bool {
		ev := call.snapshot()
		return len(ev) == 1 && ev[0].NodeID == "n1" && errors.Is(ev[0].Err, sdk.ErrPermissionDenied)
	})
	if _, cancelled := controls(p1, id); !cancelled {
		t.Error("n1's subscription was not cancelled")
	}
	// A batch for an unknown subscription is dropped.
	if err := s1.Handle(logMsg(&workerv1.LogBatch{SubscriptionId: "nope", Lines: lines("t1", 1, 1)})); err != nil {
		t.Fatal(err)
	}

	// n2 ignores its credit while the client does not read: one batch past
	// the credit ends its part.
	for i := range logCredit + 1 {
		if err := s2.Handle(logMsg(&workerv1.LogBatch{SubscriptionId: id2, Lines: lines("t2", i, i)})); err != nil {
			t.Fatal(err)
		}
	}
	// The client reads again: however the batches were grouped, all go.
	close(call.gate)
	if err := <-call.done; err != nil {
		t.Fatalf("Logs = %v", err)
	}
	ev := call.snapshot()
	last := ev[len(ev)-1]
	if last.NodeID != "n2" || !errors.Is(last.Err, sdk.ErrResourceExhausted) {
		t.Errorf("last event = %+v, want n2 refused for exceeding its credit", last)
	}
	for _, ev := range ev {
		for _, l := range ev.Lines {
			if l.GetTaskId() != "t2" {
				t.Errorf("emitted a line of %s", l.GetTaskId())
			}
		}
	}
}

func TestLogsEndWithSessionOrCaller(t *testing.T) {
	e := newEnv(t)
	s1, p1 := e.open("n1")
	_, p2 := e.open("n2")
	call := startLogs(e, LogQuery{Tasks: map[string][]string{"n1": {"t1"}, "n2": {"t2"}}, Follow: true}, false)
	id := subscription(t, p1).GetId()
	id2 := subscription(t, p2).GetId()

	// n1 reconnects: its old session's part ends, and the old session can
	// no longer publish.
	s1b, _ := e.open("n1")
	eventually(t, "n1's part ended", func() bool {
		ev := call.snapshot()
		return len(ev) == 1 && ev[0].NodeID == "n1" && errors.Is(ev[0].Err, sdk.ErrUnavailable)
	})
	for _, s := range []*session{s1, s1b} {
		if err := s.Handle(logMsg(&workerv1.LogBatch{SubscriptionId: id, Lines: lines("t1", 1, 1)})); err != nil {
			t.Fatal(err)
		}
	}

	// The caller goes away: n2's readers are cancelled.
	call.cancel()
	if err := <-call.done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Logs = %v, want context.Canceled", err)
	}
	if _, cancelled := controls(p2, id2); !cancelled {
		t.Error("n2's subscription was not cancelled")
	}
	if n := len(call.snapshot()); n != 1 {
		t.Errorf("%d events, want only n1's end", n)
	}
}

func TestValidLogBatch(t *testing.T) {
	big := make([]byte, maxLogLineBytes+1)
	for _, tc := range []struct {
		name  string
		b     *workerv1.LogBatch
		field string // "" when valid
	}{
		{"valid", &workerv1.LogBatch{SubscriptionId: "s", Lines: lines("t", 1, 2)}, ""},
		{"no subscription", &workerv1.LogBatch{}, "subscription_id"},
		{"no task", &workerv1.LogBatch{SubscriptionId: "s", Lines: []*workerv1.LogLine{{Stream: workerv1.LogStream_LOG_STREAM_STDERR}}}, "lines[0].task_id"},
		{"no stream", &workerv1.LogBatch{SubscriptionId: "s", Lines: []*workerv1.LogLine{{TaskId: "t"}}}, "lines[0].stream"},
		{"long line", &workerv1.LogBatch{SubscriptionId: "s", Lines: []*workerv1.LogLine{{TaskId: "t", Stream: workerv1.LogStream_LOG_STREAM_STDOUT, Data: big}}}, "lines[0].data"},
		{"too many lines", &workerv1.LogBatch{SubscriptionId: "s", Lines: lines("t", 0, maxLogBatchLines)}, "lines"},
		{"error without task", &workerv1.LogBatch{SubscriptionId: "s", Errors: []*workerv1.TaskLogError{{Error: "x"}}}, "errors[0].task_id"},
	} {
		err := validLogBatch(tc.b)
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: validLogBatch = %v, want nil", tc.name, err)
			}
			continue
		}
		var fe sdk.FieldErrors
		if !errors.As(err, &fe) || !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: validLogBatch = %v, want InvalidArgument naming %s", tc.name, err, tc.field)
		}
	}
}

// TestRelayBatchesBoundBytes: a relay batch stays under maxRelayBatchBytes
// however the log batches it carries add up; a message larger than that
// goes alone.
func TestRelayBatchesBoundBytes(t *testing.T) {
	q := newQueue[*workerv1.RelayedWorkerMessage]()
	big := func(n int) *workerv1.RelayedWorkerMessage {
		return &workerv1.RelayedWorkerMessage{StreamId: 1, Message: logMsg(&workerv1.LogBatch{SubscriptionId: "s",
			Lines: []*workerv1.LogLine{{TaskId: "t", Stream: workerv1.LogStream_LOG_STREAM_STDOUT, Data: make([]byte, n)}}})}
	}
	for range 100 {
		if err := q.push(big(48 << 10)); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.push(big(maxRelayBatchBytes + 1)); err != nil {
		t.Fatal(err)
	}
	q.close()
	var sizes []int
	n := 0
	err := sendBatches(context.Background(), q, func(batch []*workerv1.RelayedWorkerMessage) error {
		size := 0
		for _, m := range batch {
			size += proto.Size(m)
		}
		sizes = append(sizes, size)
		n += len(batch)
		if size > maxRelayBatchBytes && len(batch) > 1 {
			t.Errorf("a batch of %d messages holds %d bytes, over %d", len(batch), size, maxRelayBatchBytes)
		}
		return nil
	})
	if err != nil || n != 101 {
		t.Fatalf("sendBatches = %v after %d of 101 messages", err, n)
	}
	if len(sizes) < 5 {
		t.Errorf("%d batches for ~5.8 MB of messages: %v", len(sizes), sizes)
	}
}
