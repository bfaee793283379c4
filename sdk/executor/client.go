package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoalhq/shoal/sdk"
	executorv1 "github.com/shoalhq/shoal/sdk/proto/shoal/executor/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// ErrBadReply is the kind of the error a Client returns when the plugin's
// reply breaks the contract (a task without an ID, an exit code out of
// range): the plugin is at fault, neither the task nor the request.
var ErrBadReply = errors.New("executor plugin broke the contract")

// maxExitCode is the highest exit code a process can report.
const maxExitCode = 255

// Client is an Executor backed by a plugin process (or any gRPC server of
// the Executor service). Errors come back as sdk kinds with the plugin's
// message, so that errors.Is(err, sdk.ErrNotFound) works across the wire
// and a failed Prepare reads as the plugin wrote it; a plugin that crashed
// mid-call is sdk.ErrUnavailable. Replies are
// validated, and one that breaks the contract is an error of kind
// ErrBadReply.
type Client struct {
	rpc  executorv1.ExecutorClient
	exec executorv1.ExecClient
}

var (
	_ Executor   = (*Client)(nil)
	_ Configurer = (*Client)(nil)
)

// NewClient returns an Executor over conn.
func NewClient(conn grpc.ClientConnInterface) *Client {
	return &Client{rpc: executorv1.NewExecutorClient(conn), exec: executorv1.NewExecClient(conn)}
}

// Configure calls the plugin's Configure.
func (c *Client) Configure(ctx context.Context, node NodeInfo, config []byte) error {
	_, err := c.rpc.Configure(ctx, &executorv1.ConfigureRequest{
		Node:   &executorv1.NodeInfo{NodeId: node.NodeID, StateDir: node.StateDir, ContainerdAddress: node.ContainerdAddress},
		Config: config,
	})
	return sdk.FromGRPC(err)
}

// Prepare calls the plugin's Prepare and passes its progress messages on.
func (c *Client) Prepare(ctx context.Context, task *objectv1.Task, files []*objectv1.TaskFile, progress func(string)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Prepare(ctx, &executorv1.PrepareRequest{Task: task, Files: files})
	if err != nil {
		return sdk.FromGRPC(err)
	}
	for {
		resp, err := stream.Recv()
		switch {
		case err == io.EOF:
			return badReply("prepare", sdk.FieldErrors{{Field: "done", Message: "the stream ended without it"}})
		case err != nil:
			return sdk.FromGRPC(err)
		}
		switch ev := resp.GetEvent().(type) {
		case *executorv1.PrepareResponse_Progress:
			if progress != nil {
				progress(ev.Progress)
			}
		case *executorv1.PrepareResponse_Done:
			return nil
		default:
			return badReply("prepare", sdk.FieldErrors{{Field: "event", Message: "is required"}})
		}
	}
}

// Start calls the plugin's Start.
func (c *Client) Start(ctx context.Context, taskID string) error {
	_, err := c.rpc.Start(ctx, &executorv1.StartRequest{TaskId: taskID})
	return sdk.FromGRPC(err)
}

// Wait calls the plugin's Wait.
func (c *Client) Wait(ctx context.Context, taskID string) (ExitStatus, error) {
	resp, err := c.rpc.Wait(ctx, &executorv1.WaitRequest{TaskId: taskID})
	if err != nil {
		return ExitStatus{}, sdk.FromGRPC(err)
	}
	var fe sdk.FieldErrors
	st := resp.GetStatus()
	if st == nil {
		fe.Add("status", "is required")
	}
	checkExitCode(&fe, "status.exit_code", st.GetExitCode())
	if st.GetExitedAt() != nil {
		if err := st.GetExitedAt().CheckValid(); err != nil {
			fe.Add("status.exited_at", "must be a valid time: %v", err)
		}
	}
	if err := fe.Err(); err != nil {
		return ExitStatus{}, badReply("wait", fe)
	}
	es := ExitStatus{ExitCode: int(st.GetExitCode()), OOMKilled: st.GetOomKilled()}
	if st.GetExitedAt() != nil {
		es.ExitedAt = st.GetExitedAt().AsTime()
	}
	return es, nil
}

// Stop calls the plugin's Stop.
func (c *Client) Stop(ctx context.Context, taskID string, signal string, grace time.Duration) error {
	_, err := c.rpc.Stop(ctx, &executorv1.StopRequest{TaskId: taskID, Signal: signal, Grace: durationpb.New(grace)})
	return sdk.FromGRPC(err)
}

// Remove calls the plugin's Remove.
func (c *Client) Remove(ctx context.Context, taskID string) error {
	_, err := c.rpc.Remove(ctx, &executorv1.RemoveRequest{TaskId: taskID})
	return sdk.FromGRPC(err)
}

// List calls the plugin's List. A reply naming a task twice, or a task
// without an ID, is refused whole: the agent adopts what List says, and a
// half-trusted list would start or remove the wrong tasks.
func (c *Client) List(ctx context.Context) ([]TaskInfo, error) {
	resp, err := c.rpc.List(ctx, &executorv1.ListRequest{})
	if err != nil {
		return nil, sdk.FromGRPC(err)
	}
	var fe sdk.FieldErrors
	seen := make(map[string]int, len(resp.GetTasks()))
	out := make([]TaskInfo, len(resp.GetTasks()))
	for i, t := range resp.GetTasks() {
		field := fmt.Sprintf("tasks[%d]", i)
		checkTaskInfo(&fe, field, t)
		if j, dup := seen[t.GetTaskId()]; dup && t.GetTaskId() != "" {
			fe.Add(field+".task_id", "%q is also tasks[%d]", t.GetTaskId(), j)
		}
		seen[t.GetTaskId()] = i
		out[i] = taskInfoFromProto(t)
	}
	if err := fe.Err(); err != nil {
		return nil, badReply("list", fe)
	}
	return out, nil
}

// Inspect calls the plugin's Inspect.
func (c *Client) Inspect(ctx context.Context, taskID string) (TaskInfo, error) {
	resp, err := c.rpc.Inspect(ctx, &executorv1.InspectRequest{TaskId: taskID})
	if err != nil {
		return TaskInfo{}, sdk.FromGRPC(err)
	}
	var fe sdk.FieldErrors
	t := resp.GetTask()
	if t == nil {
		fe.Add("task", "is required")
	} else {
		checkTaskInfo(&fe, "task", t)
		if t.GetTaskId() != "" && t.GetTaskId() != taskID {
			fe.Add("task.task_id", "must be the task asked for, %q, got %q", taskID, t.GetTaskId())
		}
	}
	if err := fe.Err(); err != nil {
		return TaskInfo{}, badReply("inspect", fe)
	}
	return taskInfoFromProto(t), nil
}

// Logs calls the plugin's Logs and hands each line to emit, in the order
// received. emit's error ends the call (and the plugin's side of it).
func (c *Client) Logs(ctx context.Context, taskID string, opts LogOptions, emit func(LogEntry) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Logs(ctx, &executorv1.LogsRequest{TaskId: taskID, Follow: opts.Follow, Tail: int64(max(opts.Tail, -1))})
	if err != nil {
		return sdk.FromGRPC(err)
	}
	for {
		resp, err := stream.Recv()
		switch {
		case err == io.EOF:
			return nil
		case err != nil:
			return sdk.FromGRPC(err)
		}
		for i, e := range resp.GetEntries() {
			s := LogStream(e.GetStream())
			if s != Stdout && s != Stderr {
				return badReply("logs", sdk.FieldErrors{{Field: fmt.Sprintf("entries[%d].stream", i), Message: fmt.Sprintf("must be stdout or stderr, got %d", e.GetStream())}})
			}
			le := LogEntry{Stream: s, Line: e.GetLine()}
			if e.GetTime() != nil {
				le.Time = e.GetTime().AsTime()
			}
			if err := emit(le); err != nil {
				return err
			}
		}
	}
}

// Stats calls the plugin's Stats.
func (c *Client) Stats(ctx context.Context, taskID string) (Stats, error) {
	resp, err := c.rpc.Stats(ctx, &executorv1.StatsRequest{TaskId: taskID})
	if err != nil {
		return Stats{}, sdk.FromGRPC(err)
	}
	if err := resp.GetTime().CheckValid(); err != nil {
		return Stats{}, badReply("stats", sdk.FieldErrors{{Field: "time", Message: fmt.Sprintf("must be a valid time: %v", err)}})
	}
	return Stats{
		CPUNanos:         resp.GetCpuNanos(),
		MemoryBytes:      resp.GetMemoryBytes(),
		MemoryLimitBytes: resp.GetMemoryLimitBytes(),
		Time:             resp.GetTime().AsTime(),
	}, nil
}

// checkTaskInfo validates a TaskInfo of a reply.
func checkTaskInfo(fe *sdk.FieldErrors, field string, t *executorv1.TaskInfo) {
	if t.GetTaskId() == "" {
		fe.Add(field+".task_id", "is required")
	}
	if t.GetRunning() && t.GetExited() {
		fe.Add(field, "must not be both running and exited")
	}
	checkExitCode(fe, field+".exit_code", t.GetExitCode())
	if t.GetPid() < 0 || t.GetPid() > 1<<31-1 {
		fe.Add(field+".pid", "must be 0 to %d, got %d", 1<<31-1, t.GetPid())
	}
	if _, ok := objectv1.TaskHealth_name[int32(t.GetHealth())]; !ok {
		fe.Add(field+".health", "must be a TaskHealth, got %d", t.GetHealth())
	}
	if len(t.GetHealthOutput()) > MaxHealthOutput+64 {
		fe.Add(field+".health_output", "must be at most %d bytes, got %d", MaxHealthOutput+64, len(t.GetHealthOutput()))
	}
}

func checkExitCode(fe *sdk.FieldErrors, field string, code int32) {
	if code < 0 || code > maxExitCode {
		fe.Add(field, "must be 0 to %d, got %d", maxExitCode, code)
	}
}

func taskInfoFromProto(t *executorv1.TaskInfo) TaskInfo {
	return TaskInfo{
		TaskID:       t.GetTaskId(),
		Running:      t.GetRunning(),
		Exited:       t.GetExited(),
		ExitCode:     int(t.GetExitCode()),
		ContainerID:  t.GetContainerId(),
		Pid:          int(t.GetPid()),
		Health:       t.GetHealth(),
		HealthOutput: t.GetHealthOutput(),
	}
}

// badReply returns an ErrBadReply error naming the reply's bad fields.
func badReply(op string, fe sdk.FieldErrors) error {
	parts := make([]string, len(fe))
	for i, f := range fe {
		parts[i] = f.Error()
	}
	return fmt.Errorf("%w: its reply to %s: %s", ErrBadReply, op, strings.Join(parts, "; "))
}
