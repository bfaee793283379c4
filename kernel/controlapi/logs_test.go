package controlapi

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/dispatch"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

func TestValidLogsRequest(t *testing.T) {
	many := make([]string, maxLogTaskRefs+1)
	for i := range many {
		many[i] = "t"
	}
	for _, tc := range []struct {
		name   string
		req    *controlv1.TaskLogsRequest
		fields []string // none when valid
	}{
		{"service", &controlv1.TaskLogsRequest{Service: "web", Follow: true}, nil},
		{"tasks, tail 0", &controlv1.TaskLogsRequest{TaskRefs: []string{"a", "b"}, Tail: proto.Int64(0)}, nil},
		{"nothing", &controlv1.TaskLogsRequest{}, []string{"service"}},
		{"both", &controlv1.TaskLogsRequest{Service: "web", TaskRefs: []string{"a"}}, []string{"task_refs"}},
		{"empty ref", &controlv1.TaskLogsRequest{TaskRefs: []string{"a", ""}}, []string{"task_refs[1]"}},
		{"too many", &controlv1.TaskLogsRequest{TaskRefs: many}, []string{"task_refs"}},
		{"negative tail", &controlv1.TaskLogsRequest{Service: "web", Tail: proto.Int64(-1)}, []string{"tail"}},
	} {
		err := validLogsRequest(tc.req)
		if len(tc.fields) == 0 {
			if err != nil {
				t.Errorf("%s: validLogsRequest = %v, want nil", tc.name, err)
			}
			continue
		}
		var fe sdk.FieldErrors
		if !errors.As(err, &fe) || !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("%s: validLogsRequest = %v, want field errors", tc.name, err)
			continue
		}
		for i, f := range tc.fields {
			if i >= len(fe) || fe[i].Field != f {
				t.Errorf("%s: errors %v, want fields %v", tc.name, fe, tc.fields)
				break
			}
		}
	}
}

func TestLogTask(t *testing.T) {
	const (
		running  = objectv1.TaskState_TASK_STATE_RUNNING
		shutdown = objectv1.TaskState_TASK_STATE_SHUTDOWN
	)
	for _, tc := range []struct {
		node      string
		desired   objectv1.TaskState
		observed  objectv1.TaskState
		container string
		want      bool
	}{
		{"n1", running, running, "c", true},
		{"n1", running, objectv1.TaskState_TASK_STATE_STARTING, "", true},
		{"n1", shutdown, running, "c", true}, // being stopped
		// Ended, in the service's history: its node keeps its logs.
		{"n1", running, objectv1.TaskState_TASK_STATE_FAILED, "c", true},
		{"n1", shutdown, objectv1.TaskState_TASK_STATE_COMPLETE, "c", true},
		{"n1", shutdown, objectv1.TaskState_TASK_STATE_SHUTDOWN, "c", true},
		{"n1", shutdown, objectv1.TaskState_TASK_STATE_ORPHANED, "c", true},
		// Ended before it started: nothing to read.
		{"n1", running, objectv1.TaskState_TASK_STATE_FAILED, "", false},
		{"n1", shutdown, objectv1.TaskState_TASK_STATE_SHUTDOWN, "", false},
		{"n1", running, objectv1.TaskState_TASK_STATE_REJECTED, "", false},
		{"n1", running, objectv1.TaskState_TASK_STATE_PREPARING, "", false}, // wrote nothing yet
		{"", running, objectv1.TaskState_TASK_STATE_PENDING, "", false},
	} {
		tk := &objectv1.Task{Id: "t", NodeId: tc.node, DesiredState: tc.desired, Status: &objectv1.TaskStatus{State: tc.observed, ContainerId: tc.container}}
		if got := logTask(tk); got != tc.want {
			t.Errorf("logTask(node %q, desired %v, observed %v, container %q) = %v, want %v", tc.node, tc.desired, tc.observed, tc.container, got, tc.want)
		}
	}
}

// fakeLogs is the workers' side of TaskLogs: it records what it was asked
// for, answers a line per task, and, for a followed service, takes the
// tasks More brings until it is closed.
type fakeLogs struct {
	mu    sync.Mutex
	asked []string // task IDs, in the order asked
	more  chan string
}

func (f *fakeLogs) Logs(ctx context.Context, q dispatch.LogQuery, emit func(dispatch.LogEvent) error) error {
	read := func(tasks map[string][]string) error {
		for node, ids := range tasks {
			for _, id := range ids {
				f.mu.Lock()
				f.asked = append(f.asked, id)
				f.mu.Unlock()
				if f.more != nil {
					f.more <- id
				}
				line := &workerv1.LogLine{TaskId: id, Stream: workerv1.LogStream_LOG_STREAM_STDOUT, Data: []byte("from " + id)}
				if err := emit(dispatch.LogEvent{NodeID: node, Lines: []*workerv1.LogLine{line}}); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := read(q.Tasks); err != nil {
		return err
	}
	for more := q.More; more != nil; {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case tasks, ok := <-more:
			if !ok {
				return nil
			}
			if err := read(tasks); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *fakeLogs) tasks() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(slices.Values(f.asked))
}

// logsStream is a TaskLogs server stream that keeps what was sent.
type logsStream struct {
	grpc.ServerStream
	ctx context.Context

	mu    sync.Mutex
	lines []string
}

func (s *logsStream) Context() context.Context { return s.ctx }

func (s *logsStream) Send(r *controlv1.TaskLogsResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range r.GetLines() {
		s.lines = append(s.lines, string(l.GetData()))
	}
	return nil
}

// endedService stores a service named web whose tasks all ended on node
// n1: one that ran and completed, one that ran and failed, and two that
// never started (rejected; shut down before they started).
func endedService(t *testing.T, r *leaderRaft) {
	t.Helper()
	task := func(id string, slot uint64, st objectv1.TaskState, container string) *objectv1.Task {
		return &objectv1.Task{Id: id, ServiceId: "svc1", Slot: slot, NodeId: "n1",
			DesiredState:       objectv1.TaskState_TASK_STATE_SHUTDOWN,
			ServiceAnnotations: &objectv1.Annotations{Name: "web"},
			Status:             &objectv1.TaskStatus{State: st, ContainerId: container}}
	}
	err := r.Update(context.Background(), func(tx *state.Tx) error {
		if err := tx.CreateService(&objectv1.Service{Id: "svc1", Spec: &objectv1.ServiceSpec{Annotations: &objectv1.Annotations{Name: "web"}}}); err != nil {
			return err
		}
		for _, tk := range []*objectv1.Task{
			task("done1", 1, objectv1.TaskState_TASK_STATE_COMPLETE, "done1"),
			task("failed2", 2, objectv1.TaskState_TASK_STATE_FAILED, "failed2"),
			task("rejected3", 3, objectv1.TaskState_TASK_STATE_REJECTED, ""),
			task("early4", 4, objectv1.TaskState_TASK_STATE_SHUTDOWN, ""),
		} {
			if err := tx.CreateTask(tk); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTaskLogsOfEndedTasks: the logs of a service whose tasks all ended
// are those of the tasks that ran, still in its history.
func TestTaskLogsOfEndedTasks(t *testing.T) {
	s, r := newTestServer(t)
	f := &fakeLogs{}
	s.logs = f
	endedService(t, r)
	stream := &logsStream{ctx: context.Background()}
	if err := s.TaskLogs(&controlv1.TaskLogsRequest{Service: "web"}, stream); err != nil {
		t.Fatal(err)
	}
	if got := f.tasks(); !slices.Equal(got, []string{"done1", "failed2"}) {
		t.Errorf("read the logs of %q, want the tasks that ran: done1, failed2", got)
	}
	if got := strings.Join(stream.lines, ","); got != "from done1,from failed2" {
		t.Errorf("sent %s", got)
	}
}

// TestTaskLogsFollowOutlivesEndedTasks: following a service whose tasks
// all ended sends their lines, then goes on with the tasks it gets, as
// docker service logs -f does, until the caller goes.
func TestTaskLogsFollowOutlivesEndedTasks(t *testing.T) {
	s, r := newTestServer(t)
	f := &fakeLogs{more: make(chan string, 10)}
	s.logs = f
	endedService(t, r)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := &logsStream{ctx: ctx}
	done := make(chan error, 1)
	go func() { done <- s.TaskLogs(&controlv1.TaskLogsRequest{Service: "web", Follow: true}, stream) }()
	for range 2 { // the ended tasks
		select {
		case <-f.more:
		case <-time.After(30 * time.Second):
			t.Fatalf("read the logs of %q within 30s, want the 2 ended tasks that ran", f.tasks())
		}
	}
	select {
	case err := <-done:
		t.Fatalf("the follow ended with its service's ended tasks: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	// The service gets a new task: it is read too.
	err := r.Update(context.Background(), func(tx *state.Tx) error {
		return tx.CreateTask(&objectv1.Task{Id: "new5", ServiceId: "svc1", Slot: 1, NodeId: "n1",
			DesiredState:       objectv1.TaskState_TASK_STATE_RUNNING,
			ServiceAnnotations: &objectv1.Annotations{Name: "web"},
			Status:             &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_RUNNING, ContainerId: "new5"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-f.more:
		if id != "new5" {
			t.Errorf("then read %s, want the new task new5", id)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the service's new task was not read within 30s")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("TaskLogs = %v after the caller went, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("TaskLogs still running 30s after the caller went")
	}
	if got := f.tasks(); !slices.Equal(got, []string{"done1", "failed2", "new5"}) {
		t.Errorf("read the logs of %q", got)
	}
}
