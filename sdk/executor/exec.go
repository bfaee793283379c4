package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoalhq/shoal/sdk"
	executorv1 "github.com/shoalhq/shoal/sdk/proto/shoal/executor/v1"
)

// Execer runs commands in tasks (shoal task exec). It is part of Executor.
type Execer interface {
	// Exec runs spec's command in the task's container, beside its
	// process, and returns its exit code once it exited and all its output
	// was written to stdio.Stdout and stdio.Stderr (with spec.Tty, all of
	// it goes to Stdout). The command reads stdio.Stdin (until EOF) when
	// it is set, and an empty stdin otherwise; with spec.Tty it runs on a
	// terminal whose size follows stdio.Resize. When ctx ends the command
	// is killed and Exec returns ctx's error. A task the executor does not
	// hold is sdk.ErrNotFound, one whose process does not run
	// sdk.ErrFailedPrecondition, a spec without a command
	// sdk.ErrInvalidArgument; a command that cannot be started in the
	// container (no such file) exits 126 or 127 with the reason on
	// stderr, as docker exec does.
	Exec(ctx context.Context, taskID string, spec ExecSpec, stdio ExecIO) (exitCode int, err error)
}

// ExecSpec is a command to run in a task.
type ExecSpec struct {
	// Cmd is the command and its arguments; required.
	Cmd []string
	// Env is added to the task's environment, "NAME=value" each.
	Env []string
	// Tty gives the command a terminal.
	Tty bool
	// WorkingDir is the command's directory; empty: the task's.
	WorkingDir string
	// User is "user", "uid", "user:group" or "uid:gid"; empty: the task's.
	User string
}

// TerminalSize is a terminal's size in characters.
type TerminalSize struct {
	Width, Height uint16
}

// ExecIO are an exec's streams.
type ExecIO struct {
	// Stdin, when set, is the command's stdin; nil gives it an empty one.
	Stdin io.Reader
	// Stdout and Stderr take the command's output; nil discards it. They
	// are each written from one goroutine at a time.
	Stdout, Stderr io.Writer
	// Resize brings the terminal's sizes, the first one included (with
	// ExecSpec.Tty); nil: the executor's default size.
	Resize <-chan TerminalSize
}

// MaxExecChunk bounds a piece of an exec's stdin or output on the wire.
const MaxExecChunk = 32 << 10

// errNoExec is what a plugin that predates exec answers.
func errNoExec(err error) error {
	return fmt.Errorf("the executor plugin cannot run commands in tasks (it has no exec): %v: %w", err, sdk.ErrFailedPrecondition)
}

// Exec calls the plugin's Exec.
func (c *Client) Exec(ctx context.Context, taskID string, spec ExecSpec, stdio ExecIO) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.exec.Exec(ctx)
	if err != nil {
		return 0, sdk.FromGRPC(err)
	}
	var mu sync.Mutex // Send is not safe for concurrent use
	send := func(m *executorv1.ExecRequest) error {
		mu.Lock()
		defer mu.Unlock()
		return stream.Send(m)
	}
	err = send(&executorv1.ExecRequest{Msg: &executorv1.ExecRequest_Start{Start: &executorv1.ExecStart{
		TaskId: taskID,
		Spec: &executorv1.ExecSpec{Cmd: spec.Cmd, Env: spec.Env, Tty: spec.Tty, WorkingDir: spec.WorkingDir,
			User: spec.User, Stdin: stdio.Stdin != nil},
	}}})
	if err != nil {
		return 0, c.execErr(stream.RecvMsg(new(executorv1.ExecResponse)))
	}
	if stdio.Stdin != nil {
		// This goroutine may outlive Exec while it waits on a Stdin that
		// never ends: the next Send fails and it returns.
		go func() {
			buf := make([]byte, MaxExecChunk)
			for {
				n, err := stdio.Stdin.Read(buf)
				if n > 0 {
					if send(&executorv1.ExecRequest{Msg: &executorv1.ExecRequest_Stdin{Stdin: append([]byte(nil), buf[:n]...)}}) != nil {
						return
					}
				}
				if err != nil {
					_ = send(&executorv1.ExecRequest{Msg: &executorv1.ExecRequest_StdinClosed{StdinClosed: true}})
					return
				}
			}
		}()
	}
	if stdio.Resize != nil {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case sz, ok := <-stdio.Resize:
					if !ok {
						return
					}
					if send(&executorv1.ExecRequest{Msg: &executorv1.ExecRequest_Resize{Resize: &executorv1.TerminalSize{Width: uint32(sz.Width), Height: uint32(sz.Height)}}}) != nil {
						return
					}
				}
			}
		}()
	}
	for {
		resp, err := stream.Recv()
		switch {
		case err == io.EOF:
			return 0, badReply("exec", sdk.FieldErrors{{Field: "exit", Message: "the stream ended without it"}})
		case err != nil:
			return 0, c.execErr(err)
		}
		switch m := resp.GetMsg().(type) {
		case *executorv1.ExecResponse_Stdout:
			if err := write(stdio.Stdout, m.Stdout); err != nil {
				return 0, err
			}
		case *executorv1.ExecResponse_Stderr:
			if err := write(stdio.Stderr, m.Stderr); err != nil {
				return 0, err
			}
		case *executorv1.ExecResponse_Exit:
			code := m.Exit.GetExitCode()
			var fe sdk.FieldErrors
			checkExitCode(&fe, "exit.exit_code", code)
			if len(fe) > 0 {
				return 0, badReply("exec", fe)
			}
			return int(code), nil
		default:
			return 0, badReply("exec", sdk.FieldErrors{{Field: "msg", Message: "must be stdout, stderr or exit"}})
		}
	}
}

func (c *Client) execErr(err error) error {
	if status.Code(err) == codes.Unimplemented {
		return errNoExec(err)
	}
	return sdk.FromGRPC(err)
}

func write(w io.Writer, b []byte) error {
	if w == nil {
		return nil
	}
	_, err := w.Write(b)
	return err
}

// execServer adapts an Executor's Exec to the gRPC service.
type execServer struct {
	executorv1.UnimplementedExecServer
	impl Executor
}

// NewExecServer adapts impl's Exec to the gRPC service Exec, which a
// plugin serves beside Executor (NewServer).
func NewExecServer(impl Executor) executorv1.ExecServer {
	return &execServer{impl: impl}
}

// validExecStart checks an exec's first message.
func validExecStart(m *executorv1.ExecRequest) error {
	start := m.GetStart()
	if start == nil {
		return sdk.FieldErrors{{Field: "start", Message: "must be the first message"}}
	}
	var fe sdk.FieldErrors
	if start.GetTaskId() == "" {
		fe.Add("start.task_id", "is required")
	}
	if len(start.GetSpec().GetCmd()) == 0 {
		fe.Add("start.spec.cmd", "is required")
	}
	return fe.Err()
}

func (s *execServer) Exec(stream executorv1.Exec_ExecServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if err := validExecStart(first); err != nil {
		return sdk.ToGRPC(err)
	}
	start := first.GetStart()
	spec := start.GetSpec()
	resize := make(chan TerminalSize, 1)
	if sz := start.GetSize(); sz != nil {
		resize <- TerminalSize{Width: uint16(sz.GetWidth()), Height: uint16(sz.GetHeight())}
	}
	stdio := ExecIO{Resize: resize}
	var stdinW *io.PipeWriter
	if spec.GetStdin() {
		var r *io.PipeReader
		r, stdinW = io.Pipe()
		stdio.Stdin = r
		defer r.Close()
	}
	go func() {
		defer func() {
			if stdinW != nil {
				stdinW.Close()
			}
		}()
		for {
			m, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					cancel() // the caller went away: kill the command
				}
				return
			}
			switch m := m.GetMsg().(type) {
			case *executorv1.ExecRequest_Stdin:
				if stdinW != nil {
					// A command that no longer reads makes the write fail;
					// what it did not read is dropped, as a closed pipe would.
					_, _ = stdinW.Write(m.Stdin)
				}
			case *executorv1.ExecRequest_StdinClosed:
				if stdinW != nil {
					stdinW.Close()
				}
			case *executorv1.ExecRequest_Resize:
				sz := TerminalSize{Width: uint16(m.Resize.GetWidth()), Height: uint16(m.Resize.GetHeight())}
				select { // the latest size counts
				case <-resize:
				default:
				}
				resize <- sz
			}
		}
	}()
	var mu sync.Mutex
	open := true
	out := func(stderr bool) io.Writer {
		return writerFunc(func(b []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			if !open {
				return 0, io.ErrClosedPipe
			}
			for rest := b; len(rest) > 0; {
				n := min(len(rest), MaxExecChunk)
				chunk := append([]byte(nil), rest[:n]...)
				m := &executorv1.ExecResponse{Msg: &executorv1.ExecResponse_Stdout{Stdout: chunk}}
				if stderr {
					m = &executorv1.ExecResponse{Msg: &executorv1.ExecResponse_Stderr{Stderr: chunk}}
				}
				if err := stream.Send(m); err != nil {
					return len(b) - len(rest), err
				}
				rest = rest[n:]
			}
			return len(b), nil
		})
	}
	stdio.Stdout, stdio.Stderr = out(false), out(true)
	code, err := s.impl.Exec(ctx, start.GetTaskId(), ExecSpec{
		Cmd: spec.GetCmd(), Env: spec.GetEnv(), Tty: spec.GetTty(), WorkingDir: spec.GetWorkingDir(), User: spec.GetUser(),
	}, stdio)
	mu.Lock()
	open = false
	mu.Unlock()
	if err != nil {
		return sdk.ToGRPC(err)
	}
	return stream.Send(&executorv1.ExecResponse{Msg: &executorv1.ExecResponse_Exit{Exit: &executorv1.ExecExit{ExitCode: int32(code)}}})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
