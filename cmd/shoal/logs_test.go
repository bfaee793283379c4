package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/internal/logbuf"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

// fakeLogs is a control API that answers TaskLogs with a script.
type fakeLogs struct {
	controlv1.UnimplementedControlServer
	responses []*controlv1.TaskLogsResponse
	err       error // ends the stream after the responses
	// then, when set, brings more responses after the first ones, as a
	// follow does, until the caller goes.
	then chan *controlv1.TaskLogsResponse

	mu   sync.Mutex
	reqs []*controlv1.TaskLogsRequest
}

func (f *fakeLogs) TaskLogs(req *controlv1.TaskLogsRequest, stream controlv1.Control_TaskLogsServer) error {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	for _, r := range f.responses {
		if err := stream.Send(r); err != nil {
			return err
		}
	}
	for f.then != nil {
		select {
		case <-stream.Context().Done():
			return stream.Context().Err()
		case r := <-f.then:
			if err := stream.Send(r); err != nil {
				return err
			}
		}
	}
	return f.err
}

func (f *fakeLogs) requests() []*controlv1.TaskLogsRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*controlv1.TaskLogsRequest(nil), f.reqs...)
}

func (f *fakeLogs) serve(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "shoal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "control.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	controlv1.RegisterControlServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return "unix://" + path
}

func logLine(task string, stream controlv1.LogStream, data string) *controlv1.LogLine {
	return &controlv1.LogLine{TaskId: task, Stream: stream, Data: []byte(data),
		Time: timestamppb.New(time.Date(2026, 3, 1, 12, 0, 1, 500, time.UTC))}
}

const (
	stdout = controlv1.LogStream_LOG_STREAM_STDOUT
	stderr = controlv1.LogStream_LOG_STREAM_STDERR
)

// webLogs is a stream of two replicas of web and a global service's task,
// with a node that could not be read.
func webLogs() *fakeLogs {
	const (
		t1 = "t1a9s8d7f6g5h4j3k2l1z0x9c"
		t2 = "t2q1w2e3r4t5y6u7i8o9p0a1s"
		t4 = "t4p0o9i8u7y6t5r4e3w2q1a2s"
		t5 = "t5b6n7m8q9w0e1r2t3y4u5i6o"
	)
	return &fakeLogs{responses: []*controlv1.TaskLogsResponse{
		{
			Tasks: []*controlv1.LogTask{{TaskId: t1, ServiceId: webID, ServiceName: "web", Slot: 1, NodeId: node1, NodeName: "node-1"}},
			Lines: []*controlv1.LogLine{logLine(t1, stdout, "hello"), logLine(t1, stderr, "warning: cold cache"), logLine(t1, stdout, "ready")},
		},
		{
			Tasks: []*controlv1.LogTask{
				{TaskId: t2, ServiceId: webID, ServiceName: "web", Slot: 12, NodeId: node4, NodeName: "node-4"},
				{TaskId: t4, ServiceId: dbID, ServiceName: "db", NodeId: node1, NodeName: "node-1"},
			},
			Lines: []*controlv1.LogLine{logLine(t2, stdout, "hello from 12"), logLine(t4, stdout, "global"), logLine(t1, stdout, "bye")},
		},
		{
			Tasks:  []*controlv1.LogTask{{TaskId: t5, ServiceId: webID, ServiceName: "web", Slot: 3, NodeId: node3, NodeName: "node-3"}},
			Errors: []*controlv1.LogError{{NodeId: node3, Error: "node n3z6x9c2v5b8n1m4l7k0j3h6g is not connected (down or reconnecting)"}},
		},
	}}
}

func TestServiceLogsPrefixesLines(t *testing.T) {
	f := webLogs()
	r := runCLI(f.serve(t), "service", "logs", "web")
	wantOut := `web.1.t1a9s8d7f6g5@node-1 | hello
web.1.t1a9s8d7f6g5@node-1 | ready
web.12.t2q1w2e3r4t5@node-4          | hello from 12
db.n1q8r2c5x7v0.t4p0o9i8u7y6@node-1 | global
web.1.t1a9s8d7f6g5@node-1           | bye
`
	wantErr := `web.1.t1a9s8d7f6g5@node-1 | warning: cold cache
error: logs of node node-3: node n3z6x9c2v5b8n1m4l7k0j3h6g is not connected (down or reconnecting)
Error: some logs could not be read (see above)
`
	if r.stdout != wantOut {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, wantOut)
	}
	if r.stderr != wantErr {
		t.Errorf("stderr:\n%s\nwant:\n%s", r.stderr, wantErr)
	}
	if r.code != 1 {
		t.Errorf("exit code %d, want 1: some logs are missing", r.code)
	}
	reqs := f.requests()
	if want := (&controlv1.TaskLogsRequest{Service: "web"}); len(reqs) != 1 || !proto.Equal(reqs[0], want) {
		t.Errorf("requests = %v, want [%v]", reqs, want)
	}
}

func TestLogsFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want *controlv1.TaskLogsRequest
		out  string // first stdout line
	}{
		{"follow and tail", []string{"service", "logs", "-f", "--tail", "5", "web"},
			&controlv1.TaskLogsRequest{Service: "web", Follow: true, Tail: proto.Int64(5)},
			"web.1.t1a9s8d7f6g5@node-1 | hello"},
		{"tail 0, full IDs, timestamps", []string{"service", "logs", "-n", "0", "--no-trunc", "-t", "web"},
			&controlv1.TaskLogsRequest{Service: "web", Tail: proto.Int64(0)},
			"web.1.t1a9s8d7f6g5h4j3k2l1z0x9c@node-1 | 2026-03-01T12:00:01.0000005Z hello"},
		{"tasks, no task IDs", []string{"task", "logs", "--no-task-ids", "t1a9", "t2q1"},
			&controlv1.TaskLogsRequest{TaskRefs: []string{"t1a9", "t2q1"}},
			"web.1@node-1 | hello"},
		{"raw", []string{"task", "logs", "--raw", "--tail", "all", "t1a9"},
			&controlv1.TaskLogsRequest{TaskRefs: []string{"t1a9"}},
			"hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := webLogs()
			r := runCLI(f.serve(t), tc.args...)
			if first, _, _ := strings.Cut(r.stdout, "\n"); first != tc.out {
				t.Errorf("first line %q, want %q", first, tc.out)
			}
			if reqs := f.requests(); len(reqs) != 1 || !proto.Equal(reqs[0], tc.want) {
				t.Errorf("requests = %v, want [%v]", reqs, tc.want)
			}
		})
	}
}

func TestLogsErrors(t *testing.T) {
	t.Run("bad tail", func(t *testing.T) {
		f := &fakeLogs{}
		r := runCLI(f.serve(t), "service", "logs", "--tail", "-3", "web")
		if r.code != 1 || !strings.Contains(r.stderr, `--tail: want a number of lines (0 or more) or "all", got "-3"`) {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
		if n := len(f.requests()); n != 0 {
			t.Errorf("%d requests sent", n)
		}
	})
	t.Run("server error after some lines", func(t *testing.T) {
		f := webLogs()
		f.responses = f.responses[:1]
		f.err = sdk.ToGRPC(sdk.ErrNotFound)
		r := runCLI(f.serve(t), "task", "logs", "nope")
		if r.code != 1 || !strings.Contains(r.stderr, "Error: not found") || !strings.Contains(r.stdout, "| ready") {
			t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})
}

// TestLogsFollowPrintsAsLinesCome: --follow prints each response as it
// comes, the tail first, while the stream stays open, and an interrupt
// (the context's end) exits 0.
func TestLogsFollowPrintsAsLinesCome(t *testing.T) {
	f := webLogs()
	f.responses = f.responses[:1]
	f.then = make(chan *controlv1.TaskLogsResponse)
	host := f.serve(t)
	c := newTestCLI()
	var out, errOut logbuf.Buffer
	c.out, c.errOut = &out, &errOut
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := make(chan int, 1)
	go func() {
		code <- c.execute(ctx, []string{"--host", host, "service", "logs", "-f", "--tail", "3", "web"})
	}()
	waitFor := func(what, text string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(out.String(), text) {
			if time.Now().After(deadline) {
				t.Fatalf("%s not printed within 30s; stdout %q, stderr %q", what, out.String(), errOut.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("the tail", "web.1.t1a9s8d7f6g5@node-1 | ready\n")
	f.then <- &controlv1.TaskLogsResponse{Lines: []*controlv1.LogLine{logLine("t1a9s8d7f6g5h4j3k2l1z0x9c", stdout, "later")}}
	waitFor("a line that came later", "web.1.t1a9s8d7f6g5@node-1 | later\n")
	cancel()
	select {
	case c := <-code:
		if c != 0 || errOut.String() != "web.1.t1a9s8d7f6g5@node-1 | warning: cold cache\n" {
			t.Errorf("interrupted: exit %d, stderr %q; want 0 and only the task's stderr line", c, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("still following 30s after the interrupt")
	}
	if reqs := f.requests(); len(reqs) != 1 || !reqs[0].GetFollow() || reqs[0].GetTail() != 3 {
		t.Errorf("requests = %v, want one follow with tail 3", reqs)
	}
}
