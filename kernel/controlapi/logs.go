package controlapi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/dispatch"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// Logs reads task logs on the workers; dispatch.Service implements it on
// every manager and serves it while the manager leads.
type Logs interface {
	Logs(ctx context.Context, q dispatch.LogQuery, emit func(dispatch.LogEvent) error) error
}

// Option configures a Server.
type Option func(*Server)

// WithLogs makes the server answer TaskLogs by reading through l. Without
// it, TaskLogs fails with Unavailable on the leader.
func WithLogs(l Logs) Option { return func(s *Server) { s.logs = l } }

// maxLogTaskRefs bounds the tasks one TaskLogs call names.
const maxLogTaskRefs = 1000

func validLogsRequest(req *controlv1.TaskLogsRequest) error {
	var fe sdk.FieldErrors
	switch {
	case req.GetService() == "" && len(req.GetTaskRefs()) == 0:
		fe.Add("service", "or task_refs is required")
	case req.GetService() != "" && len(req.GetTaskRefs()) > 0:
		fe.Add("task_refs", "must be empty when service is set")
	}
	if n := len(req.GetTaskRefs()); n > maxLogTaskRefs {
		fe.Add("task_refs", "must name at most %d tasks, got %d", maxLogTaskRefs, n)
	}
	for i, ref := range req.GetTaskRefs() {
		if ref == "" {
			fe.Add(fmt.Sprintf("task_refs[%d]", i), "must not be empty")
		}
	}
	if req.Tail != nil && req.GetTail() < 0 {
		fe.Add("tail", "must be 0 or more (unset: all lines), got %d", req.GetTail())
	}
	return fe.Err()
}

// logTask reports whether a service's task is read for its logs: placed
// and started (before, its process wrote nothing). A task that ended is
// read as long as it is in the service's history, as docker does: its
// node keeps its container, and so its logs, until the orchestrator
// deletes the task (see dispatch.assigned). One that ended without a
// container (it could not be prepared or started, or was shut down
// before it started) wrote nothing: the agent records a task's container
// in its status once it started.
func logTask(t *objectv1.Task) bool {
	st := t.GetStatus()
	switch {
	case t.GetNodeId() == "" || st.GetState() < objectv1.TaskState_TASK_STATE_STARTING:
		return false
	case st.GetState() <= objectv1.TaskState_TASK_STATE_RUNNING:
		return true
	}
	return st.GetContainerId() != ""
}

// logTasks are the tasks a TaskLogs call reads, as its client sees them.
// The watch of a followed service adds to them while the call runs.
type logTasks struct {
	mu        sync.Mutex
	info      map[string]*controlv1.LogTask
	byNode    map[string][]string
	described map[string]bool
}

// add records t, reporting false when it is known already.
func (lt *logTasks) add(t *objectv1.Task, nodeName string) bool {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if lt.info[t.GetId()] != nil {
		return false
	}
	lt.info[t.GetId()] = &controlv1.LogTask{
		TaskId: t.GetId(), ServiceId: t.GetServiceId(), ServiceName: t.GetServiceAnnotations().GetName(),
		Slot: int64(t.GetSlot()), NodeId: t.GetNodeId(), NodeName: nodeName,
	}
	if t.GetNodeId() != "" {
		lt.byNode[t.GetNodeId()] = append(lt.byNode[t.GetNodeId()], t.GetId())
	}
	return true
}

// describe adds the task to resp unless the client knows it already.
func (lt *logTasks) describe(resp *controlv1.TaskLogsResponse, taskID string) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if info := lt.info[taskID]; info != nil && !lt.described[taskID] {
		lt.described[taskID] = true
		resp.Tasks = append(resp.Tasks, info)
	}
}

// onNode returns the tasks on a node.
func (lt *logTasks) onNode(nodeID string) []string {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	return append([]string(nil), lt.byNode[nodeID]...)
}

// resolve looks up the tasks req asks for in tx and records them in lt:
// the service's tasks that logTask keeps, or the named tasks (an error for
// each ref not found, the others still returned). It returns the tasks not
// known to lt before, by slot, node and ID, and the service's ID when req
// names a service. A service not found returns its lookup error alone.
func (lt *logTasks) resolve(tx *state.ReadTx, req *controlv1.TaskLogsRequest) (tasks []*objectv1.Task, serviceID string, lookErr error) {
	if req.GetService() != "" {
		svc, err := tx.LookupService(req.GetService())
		if err != nil {
			return nil, "", err
		}
		serviceID = svc.GetId()
		for _, t := range tx.TasksByService(serviceID) {
			if logTask(t) {
				tasks = append(tasks, t)
			}
		}
	} else {
		var errs []error
		for i, ref := range req.GetTaskRefs() {
			t, err := tx.LookupTask(ref)
			if err != nil {
				errs = append(errs, fmt.Errorf("task_refs[%d]: %w", i, err))
				continue
			}
			tasks = append(tasks, t)
		}
		lookErr = errors.Join(errs...)
	}
	sort.Slice(tasks, func(i, j int) bool {
		a, b := tasks[i], tasks[j]
		return cmp.Or(cmp.Compare(a.GetSlot(), b.GetSlot()), cmp.Compare(a.GetNodeId(), b.GetNodeId()), cmp.Compare(a.GetId(), b.GetId())) < 0
	})
	uniq := tasks[:0]
	for _, t := range tasks {
		if lt.add(t, logNodeName(tx, t.GetNodeId())) {
			uniq = append(uniq, t)
		}
	}
	return uniq, serviceID, lookErr
}

// unplaced is the first response of a call: an error for each of tasks not
// placed on a node, which has no logs. Only named tasks get there: a
// service's unplaced ones are not asked about. It has no errors when every
// task is placed, and is then not sent.
func (lt *logTasks) unplaced(tasks []*objectv1.Task) *controlv1.TaskLogsResponse {
	first := &controlv1.TaskLogsResponse{}
	for _, t := range tasks {
		if t.GetNodeId() == "" {
			lt.describe(first, t.GetId())
			first.Errors = append(first.Errors, &controlv1.LogError{TaskId: t.GetId(), Error: "task is not placed on a node yet: no logs"})
		}
	}
	return first
}

// placedByNode returns the IDs of the placed ones of tasks by node, as
// dispatch.LogQuery.Tasks takes them.
func placedByNode(tasks []*objectv1.Task) map[string][]string {
	byNode := map[string][]string{}
	for _, t := range tasks {
		if t.GetNodeId() != "" {
			byNode[t.GetNodeId()] = append(byNode[t.GetNodeId()], t.GetId())
		}
	}
	return byNode
}

// response turns what a node sent into a response to the client: its lines,
// its errors per task, and its error as a node (the node's tasks did not
// all send their lines), each task described on its first mention.
func (lt *logTasks) response(ev dispatch.LogEvent) *controlv1.TaskLogsResponse {
	resp := &controlv1.TaskLogsResponse{}
	for _, l := range ev.Lines {
		lt.describe(resp, l.GetTaskId())
		resp.Lines = append(resp.Lines, &controlv1.LogLine{
			TaskId: l.GetTaskId(), Stream: logStream(l.GetStream()), Time: l.GetTime(), Data: l.GetData(),
		})
	}
	for _, e := range ev.TaskErrors {
		lt.describe(resp, e.GetTaskId())
		resp.Errors = append(resp.Errors, &controlv1.LogError{TaskId: e.GetTaskId(), NodeId: ev.NodeID, Error: e.GetError()})
	}
	if ev.Err != nil {
		for _, id := range lt.onNode(ev.NodeID) {
			lt.describe(resp, id)
		}
		resp.Errors = append(resp.Errors, &controlv1.LogError{NodeId: ev.NodeID, Error: ev.Err.Error()})
	}
	return resp
}

func logNodeName(tx *state.ReadTx, id string) string {
	if n := tx.Node(id); n != nil {
		return cmp.Or(n.GetDescription().GetHostname(), n.GetSpec().GetAnnotations().GetName(), id)
	}
	return id
}

// TaskLogs streams the logs of a service's tasks or of the named tasks:
// those still running and those that ended but are in the service's
// history (see logTask). Following a service also reads the tasks it gets
// while the call runs (a replica restarted, the service scaled or
// updated), until the caller cancels or the service is removed and its
// last tasks ended: as docker service logs -f, a follow does not end when
// every task has ended, since the service may get new ones (scaled up,
// updated, or restarted by its policy); following named tasks ends once
// each of them ended and all its lines went.
func (s *Server) TaskLogs(req *controlv1.TaskLogsRequest, stream controlv1.Control_TaskLogsServer) error {
	ctx := stream.Context()
	if fwd, err := s.forwardStream(ctx, controlv1.Control_TaskLogs_FullMethodName, req,
		func() proto.Message { return &controlv1.TaskLogsResponse{} }, stream.SendMsg); fwd {
		return err
	}
	if err := validLogsRequest(req); err != nil {
		return grpcErr(err)
	}
	if s.logs == nil {
		return grpcErr(fmt.Errorf("task logs: this manager serves no logs: %w", sdk.ErrUnavailable))
	}
	lt := &logTasks{info: map[string]*controlv1.LogTask{}, byNode: map[string][]string{}, described: map[string]bool{}}
	var (
		tasks     []*objectv1.Task
		serviceID string
		lookErr   error
	)
	resolve := func(tx *state.ReadTx) { tasks, serviceID, lookErr = lt.resolve(tx, req) }
	q := dispatch.LogQuery{Follow: req.GetFollow(), Tail: -1}
	if req.Tail != nil {
		q.Tail = req.GetTail()
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	if req.GetFollow() && req.GetService() != "" {
		// The view and the watch in one step: no task is missed.
		events, cancelWatch := s.st.ViewAndWatch(resolve)
		defer cancelWatch()
		if lookErr == nil {
			wctx, cancel := context.WithCancel(ctx)
			defer cancel() // before wg.Wait
			more := make(chan map[string][]string)
			q.More = more
			wg.Go(func() { s.watchLogTasks(wctx, serviceID, events, lt, more) })
		}
	} else {
		s.view(resolve)
	}
	if lookErr != nil {
		return grpcErr(lookErr)
	}

	if first := lt.unplaced(tasks); len(first.Errors) > 0 {
		if err := stream.Send(first); err != nil {
			return err
		}
	}
	q.Tasks = placedByNode(tasks)
	start := time.Now()
	err := s.logs.Logs(ctx, q, func(ev dispatch.LogEvent) error {
		return stream.Send(lt.response(ev))
	})
	if err != nil && ctx.Err() != nil {
		return nil // the caller went away: nothing to tell it
	}
	if err != nil {
		return grpcErr(err)
	}
	s.log.Debug("task logs sent", "service", req.GetService(), "tasks", len(tasks), "follow", req.GetFollow(), "took", time.Since(start))
	return nil
}

// watchLogTasks passes the tasks a followed service gets to more, until
// ctx ends, the service is removed, or the watch closes (the state was
// restored under it: the tasks known so far are still followed). It never
// blocks the watch: tasks gather while the subscription is busy.
func (s *Server) watchLogTasks(ctx context.Context, serviceID string, events <-chan state.Event, lt *logTasks, more chan<- map[string][]string) {
	defer close(more)
	pending := map[string][]string{}
	for {
		var out chan<- map[string][]string
		if len(pending) > 0 {
			out = more
		}
		select {
		case <-ctx.Done():
			return
		case out <- pending:
			pending = map[string][]string{}
		case ev, ok := <-events:
			if !ok {
				return
			}
			if ev.Service != nil && ev.Service.GetId() == serviceID && ev.Kind == raftv1.ActionKind_ACTION_KIND_DELETE {
				return
			}
			t := ev.Task
			if t == nil || t.GetServiceId() != serviceID || ev.Kind == raftv1.ActionKind_ACTION_KIND_DELETE || !logTask(t) {
				continue
			}
			var name string
			s.view(func(tx *state.ReadTx) { name = logNodeName(tx, t.GetNodeId()) })
			if lt.add(t, name) {
				pending[t.GetNodeId()] = append(pending[t.GetNodeId()], t.GetId())
			}
		}
	}
}

func logStream(s workerv1.LogStream) controlv1.LogStream {
	switch s {
	case workerv1.LogStream_LOG_STREAM_STDOUT:
		return controlv1.LogStream_LOG_STREAM_STDOUT
	case workerv1.LogStream_LOG_STREAM_STDERR:
		return controlv1.LogStream_LOG_STREAM_STDERR
	}
	return controlv1.LogStream_LOG_STREAM_UNSPECIFIED
}

// forwardStream is forward for a server-streaming call: on a follower, it
// makes the call on the leader and passes every message it answers to
// send. If the leader changes before the first message came back, the
// call goes to the new one; after that, a broken stream is the caller's
// error to see (its messages cannot be taken back).
func (s *Server) forwardStream(ctx context.Context, method string, req proto.Message, newResp func() proto.Message, send func(any) error) (bool, error) {
	if s.raft.IsLeader() {
		return false, nil
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(forwardedKey)) > 0 {
		return true, sdk.ToGRPC(errNoLeader)
	}
	out := metadata.AppendToOutgoingContext(ctx, forwardedKey, "1")
	desc := &grpc.StreamDesc{ServerStreams: true}
	for {
		leaderID, _ := s.raft.Leader()
		conn, err := s.leader.LeaderConn(ctx)
		if err != nil {
			return true, sdk.ToGRPC(err)
		}
		attempt, cancel := context.WithCancel(out)
		changed := make(chan bool, 1)
		received := make(chan struct{})
		go func() {
			tick := time.NewTicker(leaderPoll)
			defer tick.Stop()
			for {
				select {
				case <-attempt.Done():
					changed <- false
					return
				case <-received:
					changed <- false
					return
				case <-tick.C:
					select {
					case <-received:
						changed <- false
						return
					default:
					}
					if id, _ := s.raft.Leader(); id != leaderID && id != "" {
						cancel()
						changed <- true
						return
					}
				}
			}
		}()
		err = relayStream(attempt, conn, desc, method, req, newResp, send, received)
		cancel()
		if !<-changed || ctx.Err() != nil {
			return true, err
		}
		if s.raft.IsLeader() {
			return false, nil
		}
	}
}

// relayStream makes one server-streaming call and passes its messages to
// send; received is closed once the first one came.
func relayStream(ctx context.Context, conn *grpc.ClientConn, desc *grpc.StreamDesc, method string, req proto.Message, newResp func() proto.Message, send func(any) error, received chan struct{}) error {
	cs, err := conn.NewStream(ctx, desc, method, grpc.WaitForReady(true), grpc.MaxCallRecvMsgSize(sdk.MaxMessageBytes))
	if err != nil {
		return err
	}
	if err := cs.SendMsg(req); err != nil {
		return err
	}
	if err := cs.CloseSend(); err != nil {
		return err
	}
	first := true
	for {
		m := newResp()
		if err := cs.RecvMsg(m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if first {
			first = false
			close(received)
		}
		if err := send(m); err != nil {
			return err
		}
	}
}
