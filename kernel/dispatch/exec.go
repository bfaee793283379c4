package dispatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/kernel/ids"
	"github.com/shoalhq/shoal/kernel/streams"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// An exec (shoal task exec) meets its worker on the leader. The control
// API asks the dispatcher (StartExec), which sends the node an ExecStart over
// its session, naming a random exec ID; the worker then opens a stream of
// its own, Dispatcher.Exec, on the manager it is connected to (a follower
// passes it on to the leader through Relay.RelayExec), and attaches with
// that ID. The command's stdin and output go over that stream, not over
// the session: a command's output may be large or its reader slow, and
// gRPC's per-stream flow control then holds back that command alone while
// heartbeats and assignments go on. The worker still only dials.
//
// Only the node an exec was sent to may attach to it (its certificate's
// node ID, or the one a follower took from it), and only once; the
// control API, which alone starts execs, is served to managers and the
// local socket only.

const (
	// maxExecsPerNode bounds the execs running on one node at a time, and
	// maxExecs those on the leader: each holds two streams and a process.
	maxExecsPerNode = 16
	maxExecs        = 1024
	// execAttachTimeout bounds the wait for the worker's attach, which it
	// opens as soon as it gets the ExecStart.
	execAttachTimeout = 15 * time.Second
	// maxExecChunk bounds a piece of stdin or output (the agent sends at
	// most executor.MaxExecChunk).
	maxExecChunk = 32 << 10
	// maxExecErrorText bounds the text of a worker's exec error.
	maxExecErrorText = 4096
)

// ExecRequest is a command to run in a task on a node.
type ExecRequest struct {
	NodeID, TaskID string
	Spec           *workerv1.ExecSpec
	Size           *workerv1.TerminalSize
}

// execWire is the worker's Exec stream as the leader serves it.
type execWire = grpc.BidiStreamingServer[workerv1.ExecUp, workerv1.ExecDown]

// execs are the dispatcher's execs, waiting for their worker or running.
type execs struct {
	mu     sync.Mutex
	byID   map[string]*pendingExec
	byNode map[string]int
}

type pendingExec struct {
	id, nodeID string
	attached   chan execWire // gets the worker's stream, once
	done       chan struct{} // closed when the control API is done with it
	taken      bool
}

// ExecConn is a running exec's worker side: Send passes the client's
// stdin and resizes to the command, Recv brings its output and, last, its
// end. One goroutine may Send while another Recvs. Close releases it
// (which ends the worker's stream, and so kills a command still running).
type ExecConn struct {
	wire    execWire
	nodeID  string
	release func()
	ended   bool
}

// Send passes a message to the worker.
func (c *ExecConn) Send(m *workerv1.ExecDown) error { return c.wire.Send(m) }

// Recv returns the worker's next message, checked: output or the end. A
// worker that breaks the protocol ends the exec with an error.
func (c *ExecConn) Recv() (*workerv1.ExecUp, error) {
	if c.ended {
		return nil, io.EOF
	}
	m, err := c.wire.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
			return nil, fmt.Errorf("node %s: its exec stream ended before the command's exit: %w", c.nodeID, sdk.ErrUnavailable)
		}
		return nil, fmt.Errorf("node %s: exec stream: %v: %w", c.nodeID, err, sdk.ErrUnavailable)
	}
	switch x := m.GetMsg().(type) {
	case *workerv1.ExecUp_Stdout:
		if len(x.Stdout) > maxExecChunk {
			return nil, c.bad("stdout must be at most %d bytes, got %d", maxExecChunk, len(x.Stdout))
		}
	case *workerv1.ExecUp_Stderr:
		if len(x.Stderr) > maxExecChunk {
			return nil, c.bad("stderr must be at most %d bytes, got %d", maxExecChunk, len(x.Stderr))
		}
	case *workerv1.ExecUp_End:
		e := x.End
		if e.GetError() == "" && (e.GetExitCode() < 0 || e.GetExitCode() > 255) {
			return nil, c.bad("end.exit_code must be 0 to 255, got %d", e.GetExitCode())
		}
		if len(e.GetError()) > maxExecErrorText {
			e.Error = e.GetError()[:maxExecErrorText]
		}
		c.ended = true
	default:
		return nil, c.bad("want stdout, stderr or end")
	}
	return m, nil
}

func (c *ExecConn) bad(format string, args ...any) error {
	return fmt.Errorf("node %s broke the exec protocol: %s: %w", c.nodeID, fmt.Sprintf(format, args...), sdk.ErrUnavailable)
}

// Close releases the exec.
func (c *ExecConn) Close() { c.release() }

// StartExec starts req's command on its node and returns once the worker
// runs it (attached). Only the leader serves it.
func (s *Service) StartExec(ctx context.Context, req ExecRequest) (*ExecConn, error) {
	d := s.dispatcher()
	if d == nil {
		return nil, fmt.Errorf("task exec: not the leader: %w", sdk.ErrUnavailable)
	}
	return d.StartExec(ctx, req)
}

// StartExec is Service.StartExec on this dispatcher.
func (d *Dispatcher) StartExec(ctx context.Context, req ExecRequest) (*ExecConn, error) {
	p := &pendingExec{id: ids.New(), nodeID: req.NodeID, attached: make(chan execWire, 1), done: make(chan struct{})}
	d.execs.mu.Lock()
	if d.execs.byID == nil {
		d.execs.byID, d.execs.byNode = map[string]*pendingExec{}, map[string]int{}
	}
	switch {
	case d.execs.byNode[req.NodeID] >= maxExecsPerNode:
		d.execs.mu.Unlock()
		return nil, fmt.Errorf("node %s runs %d execs already, the most it may: %w", req.NodeID, maxExecsPerNode, sdk.ErrResourceExhausted)
	case len(d.execs.byID) >= maxExecs:
		d.execs.mu.Unlock()
		return nil, fmt.Errorf("the cluster runs %d execs already, the most it may: %w", maxExecs, sdk.ErrResourceExhausted)
	}
	d.execs.byID[p.id] = p
	d.execs.byNode[req.NodeID]++
	d.execs.mu.Unlock()
	release := sync.OnceFunc(func() {
		close(p.done)
		d.execs.mu.Lock()
		delete(d.execs.byID, p.id)
		if d.execs.byNode[req.NodeID]--; d.execs.byNode[req.NodeID] <= 0 {
			delete(d.execs.byNode, req.NodeID)
		}
		d.execs.mu.Unlock()
	})
	sess := d.session(req.NodeID)
	if sess == nil {
		release()
		return nil, fmt.Errorf("node %s is not connected (down or reconnecting): %w", req.NodeID, sdk.ErrUnavailable)
	}
	if !sess.peer.send(&workerv1.ManagerMessage{Msg: &workerv1.ManagerMessage_ExecStart{ExecStart: &workerv1.ExecStart{
		ExecId: p.id, TaskId: req.TaskID, Spec: req.Spec, Size: req.Size,
	}}}) {
		release()
		return nil, fmt.Errorf("node %s: its session is closing: %w", req.NodeID, sdk.ErrUnavailable)
	}
	d.log.Debug("exec sent", "exec_id", p.id, "node_id", req.NodeID, "task_id", req.TaskID)
	timer := time.NewTimer(execAttachTimeout)
	defer timer.Stop()
	select {
	case w := <-p.attached:
		return &ExecConn{wire: w, nodeID: req.NodeID, release: release}, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	case <-d.done:
		release()
		return nil, fmt.Errorf("task exec: this manager is no longer the leader: %w", sdk.ErrUnavailable)
	case <-timer.C:
		release()
		return nil, fmt.Errorf("node %s did not take the exec within %s: %w", req.NodeID, execAttachTimeout, sdk.ErrUnavailable)
	}
}

// attachExec serves a worker's Exec stream on the leader: it hands the
// stream to the exec waiting for it, and returns (ending the stream) once
// that exec is done or the worker went away.
func (d *Dispatcher) attachExec(ctx context.Context, nodeID, execID string, w execWire) error {
	d.execs.mu.Lock()
	p := d.execs.byID[execID]
	ok := p != nil && p.nodeID == nodeID && !p.taken
	if ok {
		p.taken = true
	}
	d.execs.mu.Unlock()
	if !ok {
		d.log.Warn("worker attached to an exec it was not sent", "node_id", nodeID, "exec_id", execID)
		return fmt.Errorf("no exec %q for node %s: %w", execID, nodeID, sdk.ErrPermissionDenied)
	}
	p.attached <- w // buffered, and taken once
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return nil
	case <-d.done:
		return fmt.Errorf("this manager is no longer the leader: %w", sdk.ErrUnavailable)
	}
}

// recvAttach reads an Exec stream's first message, which must be an
// attach, within helloTimeout.
func recvAttach(w execWire) (*workerv1.ExecAttach, error) {
	m, err := streams.First(w.Context(), helloTimeout, "attach", w.Recv)
	if err != nil {
		return nil, err
	}
	a := m.GetAttach()
	if a == nil || a.GetExecId() == "" || len(a.GetExecId()) > 64 {
		return nil, fmt.Errorf("the first message must be an attach with an exec_id: %w", sdk.ErrInvalidArgument)
	}
	return a, nil
}

// Exec serves a worker's Exec stream: on the leader itself, or passed on
// to the leader from a follower.
func (s *Service) Exec(w workerv1.Dispatcher_ExecServer) error {
	ctx := w.Context()
	nodeID, err := workerIdentity(ctx)
	if err != nil {
		return sdk.ToGRPC(err)
	}
	a, err := recvAttach(w)
	if err != nil {
		return sdk.ToGRPC(err)
	}
	if d := s.dispatcher(); d != nil {
		return sdk.ToGRPC(d.attachExec(ctx, nodeID, a.GetExecId(), w))
	}
	return sdk.ToGRPC(s.relayExec(ctx, nodeID, a.GetExecId(), w))
}

// RelayExec serves, on the leader, a worker's Exec stream that a follower
// passes on.
func (s *Service) RelayExec(w workerv1.Relay_RelayExecServer) error {
	ctx := w.Context()
	p, err := ca.PeerFromContext(ctx)
	if err != nil {
		return sdk.ToGRPC(err)
	}
	if p.Role != objectv1.NodeRole_NODE_ROLE_MANAGER {
		return sdk.ToGRPC(fmt.Errorf("relay needs a manager certificate: %w", sdk.ErrPermissionDenied))
	}
	d := s.dispatcher()
	if d == nil {
		return sdk.ToGRPC(fmt.Errorf("not the leader: %w", sdk.ErrUnavailable))
	}
	a, err := recvAttach(w)
	if err != nil {
		return sdk.ToGRPC(err)
	}
	if a.GetNodeId() == "" {
		return sdk.ToGRPC(fmt.Errorf("attach.node_id is required on a relayed exec: %w", sdk.ErrInvalidArgument))
	}
	return sdk.ToGRPC(d.attachExec(ctx, a.GetNodeId(), a.GetExecId(), w))
}

// relayExec passes a worker's Exec stream on to the leader, both ways, as
// it is, until either side ends it.
func (s *Service) relayExec(ctx context.Context, nodeID, execID string, w execWire) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conn, err := s.relay.leader.LeaderConn(ctx)
	if err != nil {
		return err
	}
	up, err := workerv1.NewRelayClient(conn).RelayExec(ctx)
	if err != nil {
		return err
	}
	if err := up.Send(&workerv1.ExecUp{Msg: &workerv1.ExecUp_Attach{Attach: &workerv1.ExecAttach{ExecId: execID, NodeId: nodeID}}}); err != nil {
		return err
	}
	return streams.Relay(w, up, cancel)
}
