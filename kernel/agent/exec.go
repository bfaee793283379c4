package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// Execs (shoal task exec) come as an ExecStart over the session; the agent
// answers each by opening a stream of its own, Dispatcher.Exec, on the
// same connection (it still only dials), attaching with the exec's ID, and
// running the command through the executor with the stream as its stdio.
// See kernel/dispatch/exec.go for the manager's side.

const (
	// maxExecs bounds the execs the node runs at a time (the leader bounds
	// them too); one over it is refused at once.
	maxExecs = 16
	// execEndWait bounds the wait, after the command's end was sent, for
	// the manager to end the stream.
	execEndWait = 10 * time.Second
)

// execRunner runs one session's execs; they end with it.
type execRunner struct {
	ctx  context.Context
	exec executor.Executor
	owns func(taskID string) bool
	conn grpc.ClientConnInterface
	log  *slog.Logger

	mu sync.Mutex
	n  int
	wg sync.WaitGroup
}

func newExecRunner(ctx context.Context, x executor.Executor, owns func(string) bool, conn grpc.ClientConnInterface, log *slog.Logger) *execRunner {
	return &execRunner{ctx: ctx, exec: x, owns: owns, conn: conn, log: log}
}

// stop waits for the execs, which end with the session's ctx.
func (r *execRunner) stop() { r.wg.Wait() }

// start runs the exec m asks for, aside.
func (r *execRunner) start(m *workerv1.ExecStart) {
	if m.GetExecId() == "" {
		r.log.Warn("exec without an id; ignored")
		return
	}
	r.mu.Lock()
	r.n++
	over := r.n > maxExecs
	r.mu.Unlock()
	r.wg.Go(func() {
		defer func() {
			r.mu.Lock()
			r.n--
			r.mu.Unlock()
		}()
		var refuse error
		switch {
		case over:
			refuse = fmt.Errorf("node runs %d execs already, the most it may: %w", maxExecs, sdk.ErrResourceExhausted)
		case !r.owns(m.GetTaskId()):
			refuse = fmt.Errorf("task %s is not assigned to this node: %w", m.GetTaskId(), sdk.ErrNotFound)
		case len(m.GetSpec().GetCmd()) == 0:
			refuse = fmt.Errorf("exec without a command: %w", sdk.ErrInvalidArgument)
		}
		if err := r.run(m, refuse); err != nil && r.ctx.Err() == nil {
			r.log.Warn("exec failed", "exec_id", m.GetExecId(), "task_id", m.GetTaskId(), "error", err)
		}
	})
}

// run attaches to the exec and runs its command (or, with refuse, only
// says why it does not).
func (r *execRunner) run(m *workerv1.ExecStart, refuse error) error {
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	stream, err := workerv1.NewDispatcherClient(r.conn).Exec(ctx)
	if err != nil {
		return sdk.FromGRPC(err)
	}
	var mu sync.Mutex // Send is not safe for concurrent use
	send := func(up *workerv1.ExecUp) error {
		mu.Lock()
		defer mu.Unlock()
		return stream.Send(up)
	}
	if err := send(&workerv1.ExecUp{Msg: &workerv1.ExecUp_Attach{Attach: &workerv1.ExecAttach{ExecId: m.GetExecId()}}}); err != nil {
		return sdk.FromGRPC(err)
	}

	spec := m.GetSpec()
	execCtx, kill := context.WithCancel(ctx)
	defer kill()
	resize := make(chan executor.TerminalSize, 1)
	if sz := m.GetSize(); sz != nil {
		resize <- termSize(sz)
	}
	stdio := executor.ExecIO{Resize: resize}
	var stdinW *io.PipeWriter
	if spec.GetStdin() {
		var stdinR *io.PipeReader
		stdinR, stdinW = io.Pipe()
		defer stdinR.Close()
		stdio.Stdin = stdinR
	}
	// The manager's side: stdin and resizes, until it ends the stream
	// (after the command's end, or because the client went away: then the
	// command is killed).
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		defer kill()
		defer func() {
			if stdinW != nil {
				stdinW.Close()
			}
		}()
		for {
			down, err := stream.Recv()
			if err != nil {
				return
			}
			switch x := down.GetMsg().(type) {
			case *workerv1.ExecDown_Stdin:
				if stdinW != nil {
					_, _ = stdinW.Write(x.Stdin) // fails once the command stopped reading
				}
			case *workerv1.ExecDown_StdinClosed:
				if stdinW != nil {
					stdinW.Close()
				}
			case *workerv1.ExecDown_Resize:
				select { // the latest size counts
				case <-resize:
				default:
				}
				resize <- termSize(x.Resize)
			}
		}
	}()

	var end *workerv1.ExecEnd
	if refuse != nil {
		end = execError(refuse)
	} else {
		stdio.Stdout = execWriter(send, false)
		stdio.Stderr = execWriter(send, true)
		code, err := r.exec.Exec(execCtx, m.GetTaskId(), executor.ExecSpec{
			Cmd: spec.GetCmd(), Env: spec.GetEnv(), Tty: spec.GetTty(), WorkingDir: spec.GetWorkingDir(), User: spec.GetUser(),
		}, stdio)
		switch {
		case err != nil && execCtx.Err() != nil:
			return nil // the client or the session went away
		case err != nil:
			end = execError(err)
		default:
			end = &workerv1.ExecEnd{ExitCode: int32(code)}
		}
	}
	if err := send(&workerv1.ExecUp{Msg: &workerv1.ExecUp_End{End: end}}); err != nil {
		return sdk.FromGRPC(err)
	}
	_ = stream.CloseSend()
	select {
	case <-recvDone:
	case <-time.After(execEndWait):
	}
	return nil
}

// execError is an ExecEnd saying why the command did not run.
func execError(err error) *workerv1.ExecEnd {
	msg := err.Error()
	if len(msg) > 4096 {
		msg = msg[:4096]
	}
	return &workerv1.ExecEnd{Error: msg, Code: uint32(grpcstatus.Code(sdk.ToGRPC(err)))}
}

func termSize(s *workerv1.TerminalSize) executor.TerminalSize {
	return executor.TerminalSize{Width: uint16(min(s.GetWidth(), 1<<16-1)), Height: uint16(min(s.GetHeight(), 1<<16-1))}
}

// execWriter sends what a command writes to one of its streams, in pieces
// of at most executor.MaxExecChunk.
func execWriter(send func(*workerv1.ExecUp) error, stderr bool) io.Writer {
	return writerFunc(func(b []byte) (int, error) {
		for rest := b; len(rest) > 0; {
			n := min(len(rest), executor.MaxExecChunk)
			chunk := append([]byte(nil), rest[:n]...)
			up := &workerv1.ExecUp{Msg: &workerv1.ExecUp_Stdout{Stdout: chunk}}
			if stderr {
				up = &workerv1.ExecUp{Msg: &workerv1.ExecUp_Stderr{Stderr: chunk}}
			}
			if err := send(up); err != nil {
				return len(b) - len(rest), errors.Join(io.ErrClosedPipe, err)
			}
			rest = rest[n:]
		}
		return len(b), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
