package controlapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/shoalhq/shoal/kernel/dispatch"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/kernel/streams"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// Execs runs commands in tasks on the workers; dispatch.Service
// implements it on every manager and serves it while the manager leads.
type Execs interface {
	StartExec(ctx context.Context, req dispatch.ExecRequest) (*dispatch.ExecConn, error)
}

// WithExecs makes the server answer TaskExec through e. Without it,
// TaskExec fails with Unavailable on the leader.
func WithExecs(e Execs) Option { return func(s *Server) { s.execs = e } }

const (
	// maxExecChunk bounds a piece of an exec's stdin, as the worker
	// protocol bounds it.
	maxExecChunk = 32 << 10
	// maxTerminalSide bounds a terminal's width and height.
	maxTerminalSide = 1<<16 - 1
	// execStartTimeout bounds the wait for a TaskExec's first message.
	execStartTimeout = 10 * time.Second
)

// validExecStart checks a TaskExec's first message with the limits of a
// service's command (limits.go): the command and its environment are
// those of a task, run once more.
func validExecStart(st *controlv1.TaskExecStart) error {
	var fe sdk.FieldErrors
	switch n := len(st.GetTask()); {
	case n == 0:
		fe.Add("start.task", "is required")
	case n > maxRefLen:
		fe.Add("start.task", "must be at most %d bytes, got %d", maxRefLen, n)
	}
	switch n := len(st.GetCmd()); {
	case n == 0:
		fe.Add("start.cmd", "is required")
	case n > maxArgs:
		fe.Add("start.cmd", "must have at most %d words, got %d", maxArgs, n)
	}
	for i, w := range st.GetCmd() {
		if len(w) > maxArgLen {
			fe.Add(fmt.Sprintf("start.cmd[%d]", i), "must be at most %d bytes, got %d", maxArgLen, len(w))
		}
	}
	if len(st.GetCmd()) > 0 && st.GetCmd()[0] == "" {
		fe.Add("start.cmd[0]", "must not be empty")
	}
	if n := len(st.GetEnv()); n > maxEnv {
		fe.Add("start.env", "must have at most %d entries, got %d", maxEnv, n)
	}
	for i, e := range st.GetEnv() {
		switch {
		case len(e) > maxArgLen:
			fe.Add(fmt.Sprintf("start.env[%d]", i), "must be at most %d bytes, got %d", maxArgLen, len(e))
		case len(e) == 0 || e[0] == '=':
			fe.Add(fmt.Sprintf("start.env[%d]", i), "must be NAME=value, got %q", e)
		}
	}
	if n := len(st.GetWorkingDir()); n > maxPathLen {
		fe.Add("start.working_dir", "must be at most %d bytes, got %d", maxPathLen, n)
	}
	if n := len(st.GetUser()); n > 2*maxUserNameLen+1 {
		fe.Add("start.user", "must be at most %d bytes, got %d", 2*maxUserNameLen+1, n)
	}
	if sz := st.GetSize(); sz != nil && (sz.GetWidth() > maxTerminalSide || sz.GetHeight() > maxTerminalSide) {
		fe.Add("start.size", "must be at most %dx%d, got %dx%d", maxTerminalSide, maxTerminalSide, sz.GetWidth(), sz.GetHeight())
	}
	return fe.Err()
}

// recvExecStart reads a TaskExec's first message, within
// execStartTimeout.
func recvExecStart(ctx context.Context, stream controlv1.Control_TaskExecServer) (*controlv1.TaskExecStart, error) {
	m, err := streams.First(ctx, execStartTimeout, "start", stream.Recv)
	if err != nil {
		return nil, err
	}
	st := m.GetStart()
	if st == nil {
		return nil, sdk.FieldErrors{{Field: "start", Message: "must be the first message"}}
	}
	return st, validExecStart(st)
}

// lookupExecTask resolves ref to a task: an ID or unique ID prefix, else
// a running task's name as service ps shows it: SERVICE.SLOT (web.1) or
// SERVICE.NODE (a global service's, by node ID or prefix), either
// optionally followed by .TASKID or a prefix of it (web.1.2sb541ix).
func lookupExecTask(tx *state.ReadTx, ref string) (*objectv1.Task, error) {
	t, err := tx.LookupTask(ref)
	if err == nil || !errors.Is(err, sdk.ErrNotFound) {
		return t, err
	}
	svcName, rest, ok := strings.Cut(ref, ".")
	if !ok {
		return nil, err
	}
	svc := tx.ServiceByName(svcName)
	if svc == nil {
		return nil, err
	}
	where, idPrefix, _ := strings.Cut(rest, ".")
	slot, slotErr := strconv.ParseUint(where, 10, 64)
	var matches []*objectv1.Task
	for _, t := range tx.TasksByService(svc.GetId()) {
		if t.GetStatus().GetState() != objectv1.TaskState_TASK_STATE_RUNNING || !strings.HasPrefix(t.GetId(), idPrefix) {
			continue
		}
		if (slotErr == nil && uint64(t.GetSlot()) == slot) || (slotErr != nil && where != "" && strings.HasPrefix(t.GetNodeId(), where)) {
			matches = append(matches, t)
		}
	}
	switch len(matches) {
	case 0:
		return nil, fmt.Errorf("task %q: no running task of service %s has that name: %w", ref, svcName, sdk.ErrNotFound)
	case 1:
		return matches[0], nil
	}
	return nil, fmt.Errorf("task %q names %d running tasks (%s, %s...): give one's ID: %w", ref, len(matches), matches[0].GetId(), matches[1].GetId(), sdk.ErrInvalidArgument)
}

// TaskExec runs a command in a running task, on its node, through the
// leader's dispatcher (see dispatch/exec.go); a follower passes the call
// to the leader as it is.
func (s *Server) TaskExec(stream controlv1.Control_TaskExecServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	if fwd, err := s.forwardExec(ctx, stream); fwd {
		return err
	}
	start, err := recvExecStart(ctx, stream)
	if err != nil {
		return grpcErr(err)
	}
	if s.execs == nil {
		return grpcErr(fmt.Errorf("task exec: this manager serves no execs: %w", sdk.ErrUnavailable))
	}
	var (
		task    *objectv1.Task
		lookErr error
	)
	s.view(func(tx *state.ReadTx) { task, lookErr = lookupExecTask(tx, start.GetTask()) })
	if lookErr != nil {
		return grpcErr(fmt.Errorf("start.task: %w", lookErr))
	}
	if st := task.GetStatus().GetState(); task.GetNodeId() == "" || st != objectv1.TaskState_TASK_STATE_RUNNING {
		return grpcErr(fmt.Errorf("task %s is not running (%s): %w", task.GetId(), st, sdk.ErrFailedPrecondition))
	}
	req := dispatch.ExecRequest{
		NodeID: task.GetNodeId(), TaskID: task.GetId(),
		Spec: &workerv1.ExecSpec{Cmd: start.GetCmd(), Env: start.GetEnv(), Tty: start.GetTty(),
			WorkingDir: start.GetWorkingDir(), User: start.GetUser(), Stdin: start.GetStdin()},
	}
	if sz := start.GetSize(); sz != nil {
		req.Size = &workerv1.TerminalSize{Width: sz.GetWidth(), Height: sz.GetHeight()}
	}
	began := time.Now()
	conn, err := s.execs.StartExec(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return grpcErr(err)
	}
	defer conn.Close()
	s.log.Info("task exec", "task_id", task.GetId(), "node_id", task.GetNodeId(), "cmd0", start.GetCmd()[0], "tty", start.GetTty())
	if err := stream.Send(&controlv1.TaskExecResponse{Msg: &controlv1.TaskExecResponse_Started{Started: &controlv1.TaskExecStarted{
		TaskId: task.GetId(), NodeId: task.GetNodeId(),
	}}}); err != nil {
		return err
	}

	// The client's stdin and resizes go to the worker as they come; a
	// client that half-closes has no more to send, one whose stream
	// breaks is gone (its ctx ends, and the command is killed).
	clientErr := make(chan error, 1)
	go func() {
		clientErr <- s.execFromClient(stream, conn)
	}()
	for {
		up, err := conn.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return grpcErr(err)
		}
		var resp *controlv1.TaskExecResponse
		switch x := up.GetMsg().(type) {
		case *workerv1.ExecUp_Stdout:
			resp = &controlv1.TaskExecResponse{Msg: &controlv1.TaskExecResponse_Stdout{Stdout: x.Stdout}}
		case *workerv1.ExecUp_Stderr:
			resp = &controlv1.TaskExecResponse{Msg: &controlv1.TaskExecResponse_Stderr{Stderr: x.Stderr}}
		case *workerv1.ExecUp_End:
			if e := x.End.GetError(); e != "" {
				code := codes.Code(x.End.GetCode())
				if code == codes.OK || code > codes.Unauthenticated {
					code = codes.Unknown
				}
				return status.Error(code, fmt.Sprintf("node %s: %s", task.GetNodeId(), e))
			}
			s.log.Debug("task exec ended", "task_id", task.GetId(), "exit_code", x.End.GetExitCode(), "took", time.Since(began))
			return stream.Send(&controlv1.TaskExecResponse{Msg: &controlv1.TaskExecResponse_ExitCode{ExitCode: x.End.GetExitCode()}})
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		select {
		case err := <-clientErr:
			if err != nil {
				return grpcErr(err)
			}
		default:
		}
	}
}

// execFromClient passes the client's messages to the worker until the
// client half-closes (nil) or sends something it must not (an error).
func (s *Server) execFromClient(stream controlv1.Control_TaskExecServer, conn *dispatch.ExecConn) error {
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return nil // the client is gone: its ctx ends the call
		}
		var down *workerv1.ExecDown
		switch x := m.GetMsg().(type) {
		case *controlv1.TaskExecRequest_Stdin:
			if len(x.Stdin) > maxExecChunk {
				return sdk.FieldErrors{{Field: "stdin", Message: fmt.Sprintf("must be at most %d bytes, got %d", maxExecChunk, len(x.Stdin))}}
			}
			down = &workerv1.ExecDown{Msg: &workerv1.ExecDown_Stdin{Stdin: x.Stdin}}
		case *controlv1.TaskExecRequest_StdinClosed:
			down = &workerv1.ExecDown{Msg: &workerv1.ExecDown_StdinClosed{StdinClosed: true}}
		case *controlv1.TaskExecRequest_Resize:
			if x.Resize.GetWidth() > maxTerminalSide || x.Resize.GetHeight() > maxTerminalSide {
				return sdk.FieldErrors{{Field: "resize", Message: fmt.Sprintf("must be at most %dx%d", maxTerminalSide, maxTerminalSide)}}
			}
			down = &workerv1.ExecDown{Msg: &workerv1.ExecDown_Resize{Resize: &workerv1.TerminalSize{Width: x.Resize.GetWidth(), Height: x.Resize.GetHeight()}}}
		default:
			return sdk.FieldErrors{{Field: "msg", Message: "must be stdin, stdin_closed or resize after start"}}
		}
		if err := conn.Send(down); err != nil {
			return nil // the worker's stream ended: Recv says why
		}
	}
}

// forwardExec passes a TaskExec that reached a follower to the leader, both
// ways, as it is. Unlike a server-streaming call, it is not retried on a
// new leader: the client's stdin cannot be taken back.
func (s *Server) forwardExec(ctx context.Context, stream controlv1.Control_TaskExecServer) (bool, error) {
	if s.raft.IsLeader() {
		return false, nil
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(forwardedKey)) > 0 {
		return true, sdk.ToGRPC(errNoLeader)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conn, err := s.leader.LeaderConn(ctx)
	if err != nil {
		return true, sdk.ToGRPC(err)
	}
	out := metadata.AppendToOutgoingContext(ctx, forwardedKey, "1")
	up, err := controlv1.NewControlClient(conn).TaskExec(out)
	if err != nil {
		return true, err
	}
	return true, streams.Relay(stream, up, cancel)
}
