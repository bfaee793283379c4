package executor

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/sdk"
	executorv1 "github.com/shoalhq/shoal/sdk/proto/shoal/executor/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// serve serves srv on a unix socket and returns a client of it.
func serve(t *testing.T, srv executorv1.ExecutorServer) *Client {
	t.Helper()
	lis, err := net.Listen("unix", filepath.Join(t.TempDir(), "executor.sock"))
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	executorv1.RegisterExecutorServer(s, srv)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient("unix://"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return NewClient(conn)
}

// liar is a plugin server whose replies break the contract as told.
type liar struct {
	executorv1.UnimplementedExecutorServer
	list    []*executorv1.TaskInfo
	wait    *executorv1.WaitResponse
	inspect *executorv1.InspectResponse
	logs    []*executorv1.LogEntry
	stats   *executorv1.StatsResponse
	prepare []*executorv1.PrepareResponse
}

func (l *liar) List(context.Context, *executorv1.ListRequest) (*executorv1.ListResponse, error) {
	return &executorv1.ListResponse{Tasks: l.list}, nil
}

func (l *liar) Wait(context.Context, *executorv1.WaitRequest) (*executorv1.WaitResponse, error) {
	return l.wait, nil
}

func (l *liar) Inspect(context.Context, *executorv1.InspectRequest) (*executorv1.InspectResponse, error) {
	return l.inspect, nil
}

func (l *liar) Stats(context.Context, *executorv1.StatsRequest) (*executorv1.StatsResponse, error) {
	return l.stats, nil
}

func (l *liar) Logs(_ *executorv1.LogsRequest, s executorv1.Executor_LogsServer) error {
	return s.Send(&executorv1.LogsResponse{Entries: l.logs})
}

func (l *liar) Prepare(_ *executorv1.PrepareRequest, s executorv1.Executor_PrepareServer) error {
	for _, m := range l.prepare {
		if err := s.Send(m); err != nil {
			return err
		}
	}
	return nil
}

func TestClientRefusesBadReplies(t *testing.T) {
	ok := &executorv1.TaskInfo{TaskId: "t1", Running: true, Pid: 7}
	tests := []struct {
		name string
		l    *liar
		call func(context.Context, *Client) error
		want string // in the error
	}{
		{"list: no task id", &liar{list: []*executorv1.TaskInfo{ok, {Exited: true}}},
			func(ctx context.Context, c *Client) error { _, err := c.List(ctx); return err }, "tasks[1].task_id: is required"},
		{"list: twice", &liar{list: []*executorv1.TaskInfo{ok, ok}},
			func(ctx context.Context, c *Client) error { _, err := c.List(ctx); return err }, `tasks[1].task_id: "t1" is also tasks[0]`},
		{"list: exit code", &liar{list: []*executorv1.TaskInfo{{TaskId: "t2", Exited: true, ExitCode: 300}}},
			func(ctx context.Context, c *Client) error { _, err := c.List(ctx); return err }, "tasks[0].exit_code: must be 0 to 255, got 300"},
		{"list: running and exited", &liar{list: []*executorv1.TaskInfo{{TaskId: "t2", Running: true, Exited: true}}},
			func(ctx context.Context, c *Client) error { _, err := c.List(ctx); return err }, "tasks[0]: must not be both running and exited"},
		{"list: pid", &liar{list: []*executorv1.TaskInfo{{TaskId: "t2", Pid: -1}}},
			func(ctx context.Context, c *Client) error { _, err := c.List(ctx); return err }, "tasks[0].pid"},
		{"wait: no status", &liar{wait: &executorv1.WaitResponse{}},
			func(ctx context.Context, c *Client) error { _, err := c.Wait(ctx, "t1"); return err }, "status: is required"},
		{"wait: exit code", &liar{wait: &executorv1.WaitResponse{Status: &executorv1.ExitStatus{ExitCode: -1}}},
			func(ctx context.Context, c *Client) error { _, err := c.Wait(ctx, "t1"); return err }, "status.exit_code: must be 0 to 255, got -1"},
		{"inspect: another task", &liar{inspect: &executorv1.InspectResponse{Task: ok}},
			func(ctx context.Context, c *Client) error { _, err := c.Inspect(ctx, "t9"); return err }, `task.task_id: must be the task asked for, "t9", got "t1"`},
		{"inspect: no task", &liar{inspect: &executorv1.InspectResponse{}},
			func(ctx context.Context, c *Client) error { _, err := c.Inspect(ctx, "t1"); return err }, "task: is required"},
		{"logs: stream", &liar{logs: []*executorv1.LogEntry{{Stream: executorv1.LogStream_LOG_STREAM_STDOUT}, {Stream: 7}}},
			func(ctx context.Context, c *Client) error {
				return c.Logs(ctx, "t1", LogOptions{Tail: -1}, func(LogEntry) error { return nil })
			}, "entries[1].stream: must be stdout or stderr, got 7"},
		{"stats: no time", &liar{stats: &executorv1.StatsResponse{}},
			func(ctx context.Context, c *Client) error { _, err := c.Stats(ctx, "t1"); return err }, "time: must be a valid time"},
		{"prepare: no done", &liar{prepare: []*executorv1.PrepareResponse{{Event: &executorv1.PrepareResponse_Progress{Progress: "50%"}}}},
			func(ctx context.Context, c *Client) error { return c.Prepare(ctx, &objectv1.Task{Id: "t1"}, nil, nil) }, "done: the stream ended without it"},
		{"prepare: empty event", &liar{prepare: []*executorv1.PrepareResponse{{}}},
			func(ctx context.Context, c *Client) error { return c.Prepare(ctx, &objectv1.Task{Id: "t1"}, nil, nil) }, "event: is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := serve(t, tt.l)
			err := tt.call(t.Context(), c)
			if !errors.Is(err, ErrBadReply) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("call = %v, want %v naming %q", err, ErrBadReply, tt.want)
			}
		})
	}
}

// echo is an Executor that records what the server glue hands it.
type echo struct {
	Executor // nil: calls not overridden panic
	gotStop  struct {
		id, signal string
		grace      time.Duration
	}
	progress []string
	lines    int
	lineLen  int
}

func (e *echo) Prepare(_ context.Context, _ *objectv1.Task, _ []*objectv1.TaskFile, progress func(string)) error {
	for _, m := range e.progress {
		progress(m)
	}
	return nil
}

func (e *echo) Stop(_ context.Context, id, signal string, grace time.Duration) error {
	e.gotStop.id, e.gotStop.signal, e.gotStop.grace = id, signal, grace
	return nil
}

func (e *echo) Inspect(_ context.Context, id string) (TaskInfo, error) {
	return TaskInfo{}, errors.Join(errors.New("task "+id), sdk.ErrNotFound)
}

func (e *echo) Logs(_ context.Context, _ string, _ LogOptions, emit func(LogEntry) error) error {
	for i := range e.lines {
		line := make([]byte, e.lineLen)
		line[0] = byte('a' + i%26)
		s := Stdout
		if i%2 == 1 {
			s = Stderr
		}
		if err := emit(LogEntry{Stream: s, Time: time.Unix(int64(i), 0), Line: line}); err != nil {
			return err
		}
	}
	return nil
}

func TestServerValidatesRequests(t *testing.T) {
	c := serve(t, NewServer(&echo{}))
	ctx := t.Context()
	for _, tt := range []struct {
		name  string
		err   error
		field string
	}{
		{"start without id", c.Start(ctx, ""), "task_id"},
		{"remove without id", c.Remove(ctx, ""), "task_id"},
		{"wait without id", second(c.Wait(ctx, "")), "task_id"},
		{"inspect without id", second(c.Inspect(ctx, "")), "task_id"},
		{"stats without id", second(c.Stats(ctx, "")), "task_id"},
		{"logs without id", c.Logs(ctx, "", LogOptions{}, func(LogEntry) error { return nil }), "task_id"},
		{"prepare without task", c.Prepare(ctx, nil, nil, nil), "task"},
		{"prepare without id", c.Prepare(ctx, &objectv1.Task{}, nil, nil), "task.id"},
		{"stop with a bad signal", c.Stop(ctx, "t1", "SIGNOPE", time.Second), "signal"},
		{"stop with a negative grace", c.Stop(ctx, "t1", "", -time.Second), "grace"},
	} {
		var fe sdk.FieldErrors
		if !errors.As(tt.err, &fe) || len(fe) != 1 || fe[0].Field != tt.field {
			t.Errorf("%s = %v, want a field error on %s", tt.name, tt.err, tt.field)
		}
	}
}

func second[T any](_ T, err error) error { return err }

func TestRoundTrip(t *testing.T) {
	e := &echo{progress: []string{"pulling: 10%", "bad utf-8: \xff"}, lines: 3000, lineLen: 200}
	c := serve(t, NewServer(e))
	ctx := t.Context()

	var got []string
	if err := c.Prepare(ctx, &objectv1.Task{Id: "t1"}, nil, func(m string) { got = append(got, m) }); err != nil {
		t.Fatalf("Prepare = %v", err)
	}
	if len(got) != 2 || got[0] != "pulling: 10%" || got[1] != "bad utf-8: \uFFFD" {
		t.Errorf("progress = %q, want the messages, made valid UTF-8", got)
	}

	if err := c.Stop(ctx, "t1", "SIGINT", 1500*time.Millisecond); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	if e.gotStop.id != "t1" || e.gotStop.signal != "SIGINT" || e.gotStop.grace != 1500*time.Millisecond {
		t.Errorf("Stop reached the executor as %+v", e.gotStop)
	}

	if _, err := c.Inspect(ctx, "t1"); !errors.Is(err, sdk.ErrNotFound) || !strings.Contains(err.Error(), "task t1") {
		t.Errorf("Inspect = %v, want %v with the executor's message", err, sdk.ErrNotFound)
	}

	n := 0
	err := c.Logs(ctx, "t1", LogOptions{Tail: -1}, func(l LogEntry) error {
		want := Stdout
		if n%2 == 1 {
			want = Stderr
		}
		if l.Stream != want || len(l.Line) != e.lineLen || l.Line[0] != byte('a'+n%26) || !l.Time.Equal(time.Unix(int64(n), 0)) {
			t.Fatalf("line %d = %v %q at %s, want it as emitted", n, l.Stream, l.Line[:1], l.Time)
		}
		n++
		return nil
	})
	if err != nil || n != e.lines {
		t.Errorf("Logs = %v after %d lines, want nil after %d", err, n, e.lines)
	}
	boom := errors.New("boom")
	if err := c.Logs(ctx, "t1", LogOptions{Tail: -1}, func(LogEntry) error { return boom }); err != boom {
		t.Errorf("Logs with a failing emit = %v, want emit's error", err)
	}
}

func TestSendLogsBatches(t *testing.T) {
	queue := make(chan *executorv1.LogEntry, 3000)
	for range 2500 {
		queue <- &executorv1.LogEntry{Stream: executorv1.LogStream_LOG_STREAM_STDOUT, Line: make([]byte, 100), Time: timestamppb.Now()}
	}
	queue <- &executorv1.LogEntry{Line: make([]byte, logBatchBytes)}
	queue <- &executorv1.LogEntry{Line: []byte("after")}
	close(queue)
	var sizes []int
	err := sendLogs(queue, func(r *executorv1.LogsResponse) error {
		sizes = append(sizes, len(r.Entries))
		return nil
	})
	// 1000 + 1000 + 500 and the big line (full by bytes) + the last one.
	if err != nil || len(sizes) != 4 || sizes[0] != logBatchEntries || sizes[1] != logBatchEntries || sizes[2] != 501 || sizes[3] != 1 {
		t.Errorf("sendLogs sent batches of %v, %v; want 1000, 1000, 501, 1", sizes, err)
	}
}

func TestLongLinesAreSplit(t *testing.T) {
	line := make([]byte, 2*maxLineBytes+10)
	got := logEntryToProto(LogEntry{Stream: Stderr, Line: line})
	if len(got) != 3 || len(got[0].Line) != maxLineBytes || len(got[2].Line) != 10 || got[2].Stream != executorv1.LogStream_LOG_STREAM_STDERR {
		t.Errorf("a line of %d bytes became %d entries", len(line), len(got))
	}
}

func TestParseSignal(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
		bad  bool
	}{
		{in: "", want: 15}, {in: "SIGTERM", want: 15}, {in: "TERM", want: 15}, {in: "sigkill", want: 9},
		{in: "SIGINT", want: 2}, {in: "9", want: 9}, {in: "64", want: 64}, {in: "SIGUSR1", want: 10},
		{in: "0", bad: true}, {in: "65", bad: true}, {in: "-1", bad: true}, {in: "SIGNOPE", bad: true}, {in: "SIG", bad: true},
	} {
		got, err := ParseSignal(tt.in)
		if tt.bad {
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Errorf("ParseSignal(%q) = %d, %v, want %v", tt.in, got, err, sdk.ErrInvalidArgument)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSignal(%q) = %d, %v, want %d", tt.in, got, err, tt.want)
		}
	}
}

// follower is an Executor whose Logs follows: it writes each line the
// test hands it, then waits for its caller to go.
type follower struct {
	Executor
	lines chan string
}

func (f *follower) Logs(ctx context.Context, _ string, _ LogOptions, emit func(LogEntry) error) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case l := <-f.lines:
			if err := emit(LogEntry{Stream: Stdout, Time: time.Now(), Line: []byte(l)}); err != nil {
				return err
			}
		}
	}
}

// TestLogsFollowThroughPlugin: a following Logs reaches the kernel line
// by line while the plugin's Logs still runs, not once it returned, and
// ends when the kernel's side goes.
func TestLogsFollowThroughPlugin(t *testing.T) {
	f := &follower{lines: make(chan string)}
	c := serve(t, NewServer(f))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	got := make(chan string)
	done := make(chan error, 1)
	go func() {
		done <- c.Logs(ctx, "t1", LogOptions{Tail: 1, Follow: true}, func(l LogEntry) error {
			got <- string(l.Line)
			return nil
		})
	}()
	for _, want := range []string{"tail", "later"} {
		f.lines <- want
		select {
		case l := <-got:
			if l != want {
				t.Fatalf("got %q, want %q", l, want)
			}
		case err := <-done:
			t.Fatalf("Logs returned %v before %q came", err, want)
		case <-time.After(30 * time.Second):
			t.Fatalf("%q not delivered within 30s of its writing", want)
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) && !errors.Is(err, sdk.ErrUnavailable) {
			t.Errorf("Logs after the caller went = %v, want it cancelled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Logs still running 30s after its caller went")
	}
}
