package executor

import (
	"context"
	"strings"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/sdk"
	executorv1 "github.com/shoalhq/shoal/sdk/proto/shoal/executor/v1"
)

const (
	// logBatchBytes bounds the line bytes of one Logs message: big enough
	// that a burst of output goes in few messages, small enough that a
	// follower sees lines while a chatty task writes.
	logBatchBytes = 256 << 10
	// logBatchEntries bounds the entries of one Logs message.
	logBatchEntries = 1000
	// maxLineBytes bounds one LogEntry's line on the wire: a longer line (a
	// task that never writes a newline) goes as several entries, so no
	// message nears sdk.MaxMessageBytes.
	maxLineBytes = 1 << 20
	// logQueue is how many lines the executor may emit ahead of the
	// stream's sender before emit blocks.
	logQueue = 1024
)

// Serve runs impl as an executor plugin process. It does not return.
func Serve(impl Executor) {
	sdk.ServePlugins(plugin.PluginSet{sdk.KindExecutor: &Plugin{Impl: impl}})
}

// Plugin is the go-plugin glue for executors. Plugin authors do not need
// it: Serve uses it, and so does the kernel to talk to a plugin process.
type Plugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the implementation served (plugin side only).
	Impl Executor
}

var _ plugin.GRPCPlugin = (*Plugin)(nil)

// GRPCServer registers Impl on the plugin's gRPC server.
func (p *Plugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	executorv1.RegisterExecutorServer(s, NewServer(p.Impl))
	executorv1.RegisterExecServer(s, NewExecServer(p.Impl))
	return nil
}

// GRPCClient returns a *Client: an Executor (and Configurer) that calls the
// plugin process.
func (p *Plugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return NewClient(c), nil
}

// NewServer adapts impl to the gRPC service, for serving it without
// go-plugin (tests, or an executor in its own daemon). Requests are
// validated before impl sees them; impl's errors go back as their gRPC
// codes.
func NewServer(impl Executor) executorv1.ExecutorServer {
	return &server{impl: impl}
}

// server adapts an Executor to the gRPC service.
type server struct {
	executorv1.UnimplementedExecutorServer
	impl Executor
}

func (s *server) Configure(ctx context.Context, req *executorv1.ConfigureRequest) (*executorv1.ConfigureResponse, error) {
	node := NodeInfo{
		NodeID:            req.GetNode().GetNodeId(),
		StateDir:          req.GetNode().GetStateDir(),
		ContainerdAddress: req.GetNode().GetContainerdAddress(),
	}
	if c, ok := s.impl.(Configurer); ok {
		if err := c.Configure(ctx, node, req.GetConfig()); err != nil {
			return nil, sdk.ToGRPC(err)
		}
	} else if len(req.GetConfig()) > 0 {
		return nil, sdk.ToGRPC(sdk.FieldErrors{{Field: "plugins.executor.config", Message: "this executor takes no settings"}})
	}
	return &executorv1.ConfigureResponse{}, nil
}

// taskID checks a request's task ID.
func taskID(id string) error {
	if id == "" {
		return sdk.ToGRPC(sdk.FieldErrors{{Field: "task_id", Message: "is required"}})
	}
	return nil
}

func (s *server) Prepare(req *executorv1.PrepareRequest, stream executorv1.Executor_PrepareServer) error {
	if req.GetTask() == nil {
		return sdk.ToGRPC(sdk.FieldErrors{{Field: "task", Message: "is required"}})
	}
	if req.GetTask().GetId() == "" {
		return sdk.ToGRPC(sdk.FieldErrors{{Field: "task.id", Message: "is required"}})
	}
	// The executor may report progress from any goroutine, and late: Send
	// is serialized, and nothing is sent once Prepare returned.
	var mu sync.Mutex
	open := true
	progress := func(msg string) {
		msg = strings.ToValidUTF8(msg, "\uFFFD")
		mu.Lock()
		defer mu.Unlock()
		if open {
			// A failed Send means the stream is gone; Prepare learns it
			// from its ctx.
			_ = stream.Send(&executorv1.PrepareResponse{Event: &executorv1.PrepareResponse_Progress{Progress: msg}})
		}
	}
	err := s.impl.Prepare(stream.Context(), req.GetTask(), req.GetFiles(), progress)
	mu.Lock()
	open = false
	mu.Unlock()
	if err != nil {
		return sdk.ToGRPC(err)
	}
	return stream.Send(&executorv1.PrepareResponse{Event: &executorv1.PrepareResponse_Done{Done: &executorv1.PrepareDone{}}})
}

func (s *server) Start(ctx context.Context, req *executorv1.StartRequest) (*executorv1.StartResponse, error) {
	if err := taskID(req.GetTaskId()); err != nil {
		return nil, err
	}
	if err := s.impl.Start(ctx, req.GetTaskId()); err != nil {
		return nil, sdk.ToGRPC(err)
	}
	return &executorv1.StartResponse{}, nil
}

func (s *server) Wait(ctx context.Context, req *executorv1.WaitRequest) (*executorv1.WaitResponse, error) {
	if err := taskID(req.GetTaskId()); err != nil {
		return nil, err
	}
	es, err := s.impl.Wait(ctx, req.GetTaskId())
	if err != nil {
		return nil, sdk.ToGRPC(err)
	}
	return &executorv1.WaitResponse{Status: exitStatusToProto(es)}, nil
}

func (s *server) Stop(ctx context.Context, req *executorv1.StopRequest) (*executorv1.StopResponse, error) {
	var fe sdk.FieldErrors
	if req.GetTaskId() == "" {
		fe.Add("task_id", "is required")
	}
	if req.GetSignal() != "" {
		if _, err := ParseSignal(req.GetSignal()); err != nil {
			fe.Add("signal", "must be a signal name (SIGTERM) or number (1 to %d), got %q", maxSignal, req.GetSignal())
		}
	}
	var grace = req.GetGrace().AsDuration()
	if req.GetGrace() != nil {
		if err := req.GetGrace().CheckValid(); err != nil || grace < 0 {
			fe.Add("grace", "must be a duration of 0 or more, got %v", req.GetGrace())
		}
	}
	if err := fe.Err(); err != nil {
		return nil, sdk.ToGRPC(err)
	}
	if err := s.impl.Stop(ctx, req.GetTaskId(), req.GetSignal(), grace); err != nil {
		return nil, sdk.ToGRPC(err)
	}
	return &executorv1.StopResponse{}, nil
}

func (s *server) Remove(ctx context.Context, req *executorv1.RemoveRequest) (*executorv1.RemoveResponse, error) {
	if err := taskID(req.GetTaskId()); err != nil {
		return nil, err
	}
	if err := s.impl.Remove(ctx, req.GetTaskId()); err != nil {
		return nil, sdk.ToGRPC(err)
	}
	return &executorv1.RemoveResponse{}, nil
}

func (s *server) List(ctx context.Context, _ *executorv1.ListRequest) (*executorv1.ListResponse, error) {
	tasks, err := s.impl.List(ctx)
	if err != nil {
		return nil, sdk.ToGRPC(err)
	}
	resp := &executorv1.ListResponse{Tasks: make([]*executorv1.TaskInfo, len(tasks))}
	for i, t := range tasks {
		resp.Tasks[i] = taskInfoToProto(t)
	}
	return resp, nil
}

func (s *server) Inspect(ctx context.Context, req *executorv1.InspectRequest) (*executorv1.InspectResponse, error) {
	if err := taskID(req.GetTaskId()); err != nil {
		return nil, err
	}
	t, err := s.impl.Inspect(ctx, req.GetTaskId())
	if err != nil {
		return nil, sdk.ToGRPC(err)
	}
	return &executorv1.InspectResponse{Task: taskInfoToProto(t)}, nil
}

func (s *server) Stats(ctx context.Context, req *executorv1.StatsRequest) (*executorv1.StatsResponse, error) {
	if err := taskID(req.GetTaskId()); err != nil {
		return nil, err
	}
	st, err := s.impl.Stats(ctx, req.GetTaskId())
	if err != nil {
		return nil, sdk.ToGRPC(err)
	}
	return &executorv1.StatsResponse{
		CpuNanos:         st.CPUNanos,
		MemoryBytes:      st.MemoryBytes,
		MemoryLimitBytes: st.MemoryLimitBytes,
		Time:             timestamppb.New(st.Time),
	}, nil
}

// Logs runs the executor's Logs with an emit that queues lines for a
// sender goroutine, which packs whatever is queued into one message: lines
// go out as soon as the stream can take them, in few messages under load.
func (s *server) Logs(req *executorv1.LogsRequest, stream executorv1.Executor_LogsServer) error {
	if err := taskID(req.GetTaskId()); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	queue := make(chan *executorv1.LogEntry, logQueue)
	sent := make(chan error, 1)
	go func() {
		err := sendLogs(queue, stream.Send)
		if err != nil {
			cancel() // the executor's emit sees it and stops
		}
		sent <- err
	}()
	opts := LogOptions{Follow: req.GetFollow(), Tail: int(max(req.GetTail(), -1))}
	err := s.impl.Logs(ctx, req.GetTaskId(), opts, func(e LogEntry) error {
		for _, pe := range logEntryToProto(e) {
			select {
			case queue <- pe:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	close(queue)
	if serr := <-sent; serr != nil {
		return serr // the stream broke: the executor's error is its echo
	}
	if err != nil {
		return sdk.ToGRPC(err)
	}
	return nil
}

// sendLogs sends the queued entries in batches until the queue is closed
// and drained, or send fails.
func sendLogs(queue <-chan *executorv1.LogEntry, send func(*executorv1.LogsResponse) error) error {
	for e := range queue {
		batch := []*executorv1.LogEntry{e}
		size := len(e.Line)
		more := true
		for more && len(batch) < logBatchEntries && size < logBatchBytes {
			select {
			case e, ok := <-queue:
				if !ok {
					more = false
					break
				}
				batch = append(batch, e)
				size += len(e.Line)
			default:
				more = false
			}
		}
		if err := send(&executorv1.LogsResponse{Entries: batch}); err != nil {
			return err
		}
	}
	return nil
}

// logEntryToProto converts e, cutting a line longer than maxLineBytes into
// several entries.
func logEntryToProto(e LogEntry) []*executorv1.LogEntry {
	ts := timestamppb.New(e.Time)
	stream := executorv1.LogStream(e.Stream)
	if len(e.Line) <= maxLineBytes {
		return []*executorv1.LogEntry{{Stream: stream, Time: ts, Line: e.Line}}
	}
	var out []*executorv1.LogEntry
	for line := e.Line; len(line) > 0; {
		n := min(len(line), maxLineBytes)
		out = append(out, &executorv1.LogEntry{Stream: stream, Time: ts, Line: line[:n]})
		line = line[n:]
	}
	return out
}

func exitStatusToProto(es ExitStatus) *executorv1.ExitStatus {
	out := &executorv1.ExitStatus{ExitCode: int32(es.ExitCode), OomKilled: es.OOMKilled}
	if !es.ExitedAt.IsZero() {
		out.ExitedAt = timestamppb.New(es.ExitedAt)
	}
	return out
}

func taskInfoToProto(t TaskInfo) *executorv1.TaskInfo {
	return &executorv1.TaskInfo{
		TaskId:       t.TaskID,
		Running:      t.Running,
		Exited:       t.Exited,
		ExitCode:     int32(t.ExitCode),
		ContainerId:  t.ContainerID,
		Pid:          int64(t.Pid),
		Health:       t.Health,
		HealthOutput: t.HealthOutput,
	}
}
