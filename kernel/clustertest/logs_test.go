package clustertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/simexec"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// collectedLogs is what a TaskLogs stream carried.
type collectedLogs struct {
	tasks  map[string]*controlv1.LogTask
	stdout map[string][]string // by task ID
	stderr map[string][]string
	errors []*controlv1.LogError
}

// readLogs reads a TaskLogs stream to its end, checking that every task is
// described before its first line or error.
func readLogs(t *testing.T, stream controlv1.Control_TaskLogsClient) (collectedLogs, error) {
	t.Helper()
	got := collectedLogs{tasks: map[string]*controlv1.LogTask{}, stdout: map[string][]string{}, stderr: map[string][]string{}}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		for _, lt := range resp.GetTasks() {
			if got.tasks[lt.GetTaskId()] != nil {
				t.Errorf("task %s described twice", lt.GetTaskId())
			}
			got.tasks[lt.GetTaskId()] = lt
		}
		for _, l := range resp.GetLines() {
			if got.tasks[l.GetTaskId()] == nil {
				t.Errorf("line of task %s before its description", l.GetTaskId())
			}
			switch l.GetStream() {
			case controlv1.LogStream_LOG_STREAM_STDOUT:
				got.stdout[l.GetTaskId()] = append(got.stdout[l.GetTaskId()], string(l.GetData()))
			case controlv1.LogStream_LOG_STREAM_STDERR:
				got.stderr[l.GetTaskId()] = append(got.stderr[l.GetTaskId()], string(l.GetData()))
			default:
				t.Errorf("line of task %s on stream %v", l.GetTaskId(), l.GetStream())
			}
		}
		got.errors = append(got.errors, resp.GetErrors()...)
	}
}

// numbered is "line from" to "line to".
func numbered(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, "line "+strconv.Itoa(i))
	}
	return out
}

// TestServiceLogs runs a 3-replica service on simulated workers, one per
// manager (so two reach the leader through a follower's relay), and reads
// its logs through every manager: each replica's lines complete and in
// order, --tail, --follow until the client cancels, and a stopped worker
// named in an error while the others' logs still come.
func TestServiceLogs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	lr := startLogsService(t)
	leader := lr.c.Leader(t, 30*time.Second)
	for _, m := range lr.c.Managers {
		role := "follower"
		if m == leader {
			role = "leader"
		}
		t.Run("all lines through "+role+" "+m.Name, func(t *testing.T) { lr.allLinesThrough(t, m) })
	}
	t.Run("tail", lr.tail)
	t.Run("task by ID prefix", lr.taskByIDPrefix)
	t.Run("cli through a follower", lr.cliThroughFollower)
	t.Run("follow until cancelled", lr.followUntilCancelled)
	t.Run("follow picks up new tasks", lr.followPicksUpNewTasks)
	t.Run("ended tasks", lr.endedTasks)
	t.Run("stopped worker named, others complete", lr.stoppedWorkerNamed)
}

// serviceLogsLines is how many lines each task of TestServiceLogs writes:
// several batches per task.
const serviceLogsLines = 2000

// logsRun is what the subtests of TestServiceLogs share: a cluster of three
// managers and three simulated workers, and the service web with one task
// on each worker, each writing "hello" and serviceLogsLines numbered lines
// on stdout.
type logsRun struct {
	c      *Cluster
	client controlv1.ControlClient
	ws     []*Worker
	// id is web's service ID; wantOut the stdout of each of its tasks.
	id      string
	wantOut []string
}

// startLogsService starts the cluster and its workers and creates web.
func startLogsService(t *testing.T) logsRun {
	t.Helper()
	c := Start(t, 3, Options{})
	client := c.Managers[0].Client(t)
	ws := StartWorkers(t, c, 3, WorkerOptions{})
	// All three ready before the service exists, so the spread puts one
	// replica on each.
	c.eventually(t, 60*time.Second, func(context.Context) error {
		states := nodeStates(t, client)
		for _, w := range ws {
			if states[w.NodeID] != objectv1.NodeState_NODE_STATE_READY {
				return fmt.Errorf("worker %s is %v", w.Name, states[w.NodeID])
			}
		}
		return nil
	})

	spec := serviceSpec("web")
	spec.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 3}}
	spec.Task.Container.Env = []string{simexec.EnvStdout + "=hello", simexec.EnvStderr + "=warming up", simexec.EnvLogLines + "=" + strconv.Itoa(serviceLogsLines)}
	// On the simulated workers, even if the managers run tasks too.
	spec.Task.Placement = &objectv1.Placement{Constraints: []string{"node.role==worker"}}
	ctx := context.Background()
	svc, err := client.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	id := svc.GetService().GetId()
	c.eventually(t, 60*time.Second, func(context.Context) error {
		by, running, _ := runningByNode(t, client, id)
		if running != 3 || len(by) != 3 {
			return fmt.Errorf("%d of 3 tasks running, on %d nodes (want one each)", running, len(by))
		}
		return nil
	})
	return logsRun{c: c, client: client, ws: ws, id: id, wantOut: append([]string{"hello"}, numbered(1, serviceLogsLines)...)}
}

// allLinesThrough reads all of web's logs through m.
func (lr logsRun) allLinesThrough(t *testing.T, m *Manager) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := m.Client(t).TaskLogs(ctx, &controlv1.TaskLogsRequest{Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := readLogs(t, stream)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.errors) > 0 {
		t.Errorf("errors: %v", got.errors)
	}
	if len(got.tasks) != 3 {
		t.Fatalf("logs of %d tasks, want 3", len(got.tasks))
	}
	slots := map[int64]bool{}
	for tid, lt := range got.tasks {
		slots[lt.GetSlot()] = true
		if lt.GetServiceName() != "web" || lt.GetServiceId() != lr.id || !strings.HasPrefix(lt.GetNodeName(), "w") {
			t.Errorf("task %s described as %v", tid, lt)
		}
		if !slices.Equal(got.stdout[tid], lr.wantOut) {
			t.Errorf("task %s: stdout has %d lines (first %q), want %d in order", tid, len(got.stdout[tid]), first(got.stdout[tid]), len(lr.wantOut))
		}
		if !slices.Equal(got.stderr[tid], []string{"warming up"}) {
			t.Errorf("task %s: stderr = %q", tid, got.stderr[tid])
		}
	}
	if len(slots) != 3 {
		t.Errorf("slots %v, want 3 different", slots)
	}
}

// tail reads the last 5 lines of each task.
func (lr logsRun) tail(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := lr.c.Managers[1].Client(t).TaskLogs(ctx, &controlv1.TaskLogsRequest{Service: "web", Tail: proto.Int64(5)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := readLogs(t, stream)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.tasks) != 3 || len(got.errors) > 0 {
		t.Fatalf("%d tasks, errors %v; want 3 tasks, no errors", len(got.tasks), got.errors)
	}
	for tid := range got.tasks {
		if want := numbered(serviceLogsLines-4, serviceLogsLines); !slices.Equal(got.stdout[tid], want) || len(got.stderr[tid]) != 0 {
			t.Errorf("task %s: --tail 5 gave stdout %q stderr %q, want %q", tid, got.stdout[tid], got.stderr[tid], want)
		}
	}
}

// taskByIDPrefix reads the logs of one task named by a prefix of its ID.
func (lr logsRun) taskByIDPrefix(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tasks, err := lr.client.ListTasks(ctx, &controlv1.ListTasksRequest{ServiceIds: []string{lr.id}})
	if err != nil {
		t.Fatal(err)
	}
	tid := tasks.GetTasks()[0].GetId()
	stream, err := lr.c.Managers[2].Client(t).TaskLogs(ctx, &controlv1.TaskLogsRequest{TaskRefs: []string{tid[:8]}, Tail: proto.Int64(1)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := readLogs(t, stream)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.tasks) != 1 || got.tasks[tid] == nil || !slices.Equal(got.stdout[tid], []string{"line " + strconv.Itoa(serviceLogsLines)}) {
		t.Errorf("task logs of %s --tail 1: tasks %v stdout %q", tid, got.tasks, got.stdout)
	}
}

// cliThroughFollower runs shoal service logs against a follower.
func (lr logsRun) cliThroughFollower(t *testing.T) {
	ctx := context.Background()
	cmd := exec.Command(Binary(t), "--host", "unix://"+lr.c.Managers[2].Socket, "service", "logs", "--tail", "1", "web")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("shoal service logs: %v\n%s", err, stderr.String())
	}
	tasks, err := lr.client.ListTasks(ctx, &controlv1.ListTasksRequest{ServiceIds: []string{lr.id}})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, tk := range tasks.GetTasks() {
		var host string
		for _, w := range lr.ws {
			if w.NodeID == tk.GetNodeId() {
				host = w.Name
			}
		}
		want = append(want, fmt.Sprintf("web.%d.%s@%s | line %d", tk.GetSlot(), tk.GetId()[:12], host, serviceLogsLines))
	}
	got := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) || stderr.Len() > 0 {
		t.Errorf("shoal service logs --tail 1 web printed\n%s\nstderr %q; want\n%s", stdout.String(), stderr.String(), strings.Join(want, "\n"))
	}
}

// followUntilCancelled follows the logs, which stay open until cancelled.
func (lr logsRun) followUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fctx, stop := context.WithCancel(ctx)
	stream, err := lr.c.Managers[1].Client(t).TaskLogs(fctx, &controlv1.TaskLogsRequest{Service: "web", Follow: true, Tail: proto.Int64(1)})
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for seen < 3 {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("after %d lines: %v", seen, err)
		}
		seen += len(resp.GetLines())
	}
	// The tasks still run: the stream stays open until cancelled.
	checkOpenUntilCancelled(t, stream, 500*time.Millisecond, "follow stream", stop)
}

// followPicksUpNewTasks follows the logs while web scales up, and gets the new task's.
func (lr logsRun) followPicksUpNewTasks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sctx, stopStream := context.WithCancel(ctx)
	defer stopStream()
	stream, err := lr.c.Managers[2].Client(t).TaskLogs(sctx, &controlv1.TaskLogsRequest{Service: "web", Follow: true, Tail: proto.Int64(0)})
	if err != nil {
		t.Fatal(err)
	}
	scale := func(n int64) {
		t.Helper()
		cur, err := lr.client.GetService(ctx, &controlv1.GetServiceRequest{Ref: lr.id})
		if err != nil {
			t.Fatal(err)
		}
		spec := proto.Clone(cur.GetService().GetSpec()).(*objectv1.ServiceSpec)
		spec.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: n}}
		if _, err := lr.client.UpdateService(ctx, &controlv1.UpdateServiceRequest{Ref: lr.id, Version: cur.GetService().GetMeta().GetVersion(), Spec: spec}); err != nil {
			t.Fatal(err)
		}
	}
	scale(4)
	var fourth *controlv1.LogTask
	var got []string
	for len(got) < serviceLogsLines+1 {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("after %d lines of the new task: %v", len(got), err)
		}
		for _, lt := range resp.GetTasks() {
			if fourth != nil || lt.GetSlot() != 4 {
				t.Fatalf("described %v; want only the new task, once", lt)
			}
			fourth = lt
		}
		for _, l := range resp.GetLines() {
			if l.GetTaskId() != fourth.GetTaskId() {
				t.Fatalf("a line of task %s; --tail 0 wants only the new task's", l.GetTaskId())
			}
			if l.GetStream() == controlv1.LogStream_LOG_STREAM_STDOUT {
				got = append(got, string(l.GetData()))
			}
		}
	}
	if !slices.Equal(got, lr.wantOut) {
		t.Errorf("the new task's stdout: %d lines from %q, want %d", len(got), first(got), len(lr.wantOut))
	}
	stopStream()
	scale(3)
	lr.c.eventually(t, 60*time.Second, func(context.Context) error {
		tasks, err := lr.client.ListTasks(context.Background(), &controlv1.ListTasksRequest{ServiceIds: []string{lr.id}})
		if err != nil {
			return err
		}
		for _, tk := range tasks.GetTasks() {
			if tk.GetSlot() == 4 && tk.GetStatus().GetState() < objectv1.TaskState_TASK_STATE_COMPLETE {
				return fmt.Errorf("the fourth task is %v", tk.GetStatus().GetState())
			}
		}
		return nil
	})
}

// endedTasks reads the logs of a service whose tasks all ended.
func (lr logsRun) endedTasks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	spec := serviceSpec("batch")
	spec.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 2}}
	spec.Task.Container.Env = []string{simexec.EnvLogLines + "=3", simexec.EnvExitAfter + "=100ms"}
	spec.Task.Restart = &objectv1.RestartPolicy{Condition: objectv1.RestartCondition_RESTART_CONDITION_NONE}
	spec.Task.Placement = &objectv1.Placement{Constraints: []string{"node.role==worker"}}
	created, err := lr.client.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	batchID := created.GetService().GetId()
	lr.c.eventually(t, 60*time.Second, func(ctx context.Context) error {
		tasks, err := lr.client.ListTasks(ctx, &controlv1.ListTasksRequest{ServiceIds: []string{batchID}})
		if err != nil {
			return err
		}
		complete := 0
		for _, tk := range tasks.GetTasks() {
			if tk.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_COMPLETE {
				complete++
			}
		}
		if complete != 2 || len(tasks.GetTasks()) != 2 {
			return fmt.Errorf("%d of %d tasks complete, want 2 of 2", complete, len(tasks.GetTasks()))
		}
		return nil
	})

	// Every task ended: their logs are still there, in the history.
	stream, err := lr.c.Managers[1].Client(t).TaskLogs(ctx, &controlv1.TaskLogsRequest{Service: "batch"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := readLogs(t, stream)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.tasks) != 2 || len(got.errors) > 0 {
		t.Fatalf("logs of %d tasks, errors %v; want the 2 ended tasks, no errors", len(got.tasks), got.errors)
	}
	for tid := range got.tasks {
		if !slices.Equal(got.stdout[tid], numbered(1, 3)) {
			t.Errorf("ended task %s: stdout %q, want %q", tid, got.stdout[tid], numbered(1, 3))
		}
	}
	lr.followEndedTasks(ctx, t, batchID)
}

// followEndedTasks follows the logs of the service batch, whose tasks all
// ended: it prints what there is, then waits until cancelled.
func (lr logsRun) followEndedTasks(ctx context.Context, t *testing.T, batchID string) {
	t.Helper()
	// Following it prints what there is, then waits for the tasks the
	// service may get, as docker service logs -f does.
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	follow, err := lr.c.Managers[2].Client(t).TaskLogs(fctx, &controlv1.TaskLogsRequest{Service: "batch", Follow: true, Tail: proto.Int64(1)})
	if err != nil {
		t.Fatal(err)
	}
	var tail []string
	for len(tail) < 2 {
		resp, err := follow.Recv()
		if err != nil {
			t.Fatalf("after the tail lines %q: %v", tail, err)
		}
		for _, l := range resp.GetLines() {
			tail = append(tail, string(l.GetData()))
		}
		if len(resp.GetErrors()) > 0 {
			t.Fatalf("errors %v", resp.GetErrors())
		}
	}
	if !slices.Equal(tail, []string{"line 3", "line 3"}) {
		t.Errorf("--tail 1 of the ended tasks: %q, want each task's last line", tail)
	}
	checkOpenUntilCancelled(t, follow, time.Second, "the follow of a service whose tasks ended", stop)
	if _, err := lr.client.RemoveService(ctx, &controlv1.RemoveServiceRequest{Ref: batchID}); err != nil {
		t.Fatal(err)
	}
}

// stoppedWorkerNamed stops a worker: the logs name it, and the other tasks' are complete.
func (lr logsRun) stoppedWorkerNamed(t *testing.T) {
	ctx := context.Background()
	var gone *Worker
	tasks, err := lr.client.ListTasks(ctx, &controlv1.ListTasksRequest{ServiceIds: []string{lr.id}})
	if err != nil {
		t.Fatal(err)
	}
	// The running tasks now; a busy machine may churn others (a
	// leader change), which this does not judge.
	var others []string
	for _, tk := range tasks.GetTasks() {
		switch {
		case tk.GetStatus().GetState() != objectv1.TaskState_TASK_STATE_RUNNING:
		case tk.GetNodeId() == lr.ws[2].NodeID:
			gone = lr.ws[2]
		default:
			others = append(others, tk.GetId())
		}
	}
	if gone == nil {
		t.Fatal("no task on the worker to stop")
	}
	gone.Stop()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream, err := lr.c.Managers[0].Client(t).TaskLogs(ctx, &controlv1.TaskLogsRequest{Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := readLogs(t, stream)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.errors) != 1 || got.errors[0].GetNodeId() != gone.NodeID || !strings.Contains(got.errors[0].GetError(), gone.NodeID) {
		t.Fatalf("errors = %v, want one naming node %s", got.errors, gone.NodeID)
	}
	if len(others) != 2 {
		t.Fatalf("%d running tasks besides the stopped worker's, want 2", len(others))
	}
	for _, tid := range others {
		if !slices.Equal(got.stdout[tid], lr.wantOut) {
			t.Errorf("task %s: %d stdout lines, want %d", tid, len(got.stdout[tid]), len(lr.wantOut))
		}
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// checkOpenUntilCancelled checks that the follow stream stays open for
// open, then ends Canceled within 10s of stop; what names the stream when it
// ended by itself.
func checkOpenUntilCancelled(t *testing.T, stream controlv1.Control_TaskLogsClient, open time.Duration, what string, stop context.CancelFunc) {
	t.Helper()
	recv := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				recv <- err
				return
			}
		}
	}()
	select {
	case err := <-recv:
		t.Fatalf("%s ended by itself: %v", what, err)
	case <-time.After(open):
	}
	stop()
	select {
	case err := <-recv:
		if status.Code(err) != codes.Canceled {
			t.Errorf("after cancel: %v, want Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow stream still open 10s after cancel")
	}
}
