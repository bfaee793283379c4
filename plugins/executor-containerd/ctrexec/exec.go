package ctrexec

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
)

// execCleanup bounds the deletion of an exec's process after it ended,
// on a ctx of its own (the caller's may be gone).
const execCleanup = 10 * time.Second

// Exec runs a command in the task's container with containerd's task exec:
// a process beside the task's own, with the container's process spec
// (environment, user, directory, capabilities) and the request's changes.
// Its stdio goes through FIFOs the shim opens (cio); with a terminal, the
// shim's console. The process is killed when ctx ends.
func (e *Executor) Exec(ctx context.Context, taskID string, spec executor.ExecSpec, stdio executor.ExecIO) (int, error) {
	if len(spec.Cmd) == 0 {
		return 0, fmt.Errorf("exec: %w", sdk.FieldErrors{{Field: "cmd", Message: "is required"}})
	}
	nctx, c, err := e.conn(ctx)
	if err != nil {
		return 0, err
	}
	ctr, err := e.load(nctx, c, taskID)
	if err != nil {
		return 0, err
	}
	s, err := stateOf(nctx, ctr)
	if err != nil {
		return 0, fmt.Errorf("task %s: %w", taskID, err)
	}
	if !s.running || s.tk == nil {
		return 0, fmt.Errorf("exec in task %s: its process does not run: %w", taskID, sdk.ErrFailedPrecondition)
	}
	ospec, err := ctr.Spec(nctx)
	if err != nil {
		return 0, fmt.Errorf("task %s: spec: %w", taskID, kind(err))
	}
	if spec.User != "" {
		info, err := ctr.Info(nctx)
		if err != nil {
			return 0, fmt.Errorf("task %s: %w", taskID, kind(err))
		}
		ospec.Process.User.AdditionalGids = nil
		for _, o := range []oci.SpecOpts{oci.WithUser(spec.User), oci.WithAdditionalGIDs(spec.User)} {
			if err := o(nctx, c, &info, ospec); err != nil {
				return 0, fmt.Errorf("exec: user %q: %v: %w", spec.User, err, sdk.ErrInvalidArgument)
			}
		}
	}
	p := *ospec.Process
	p.Args = spec.Cmd
	p.Terminal = spec.Tty
	p.Env = append(append([]string(nil), p.Env...), spec.Env...)
	if spec.WorkingDir != "" {
		p.Cwd = spec.WorkingDir
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	p.ConsoleSize = nil

	// The command's stdin ends with an EOF: the FIFO's copy ends, and the
	// shim must be told to close the process's end (CloseIO).
	started := make(chan client.Process, 1)
	var stdin io.Reader
	if stdio.Stdin != nil {
		stdin = &closingReader{r: stdio.Stdin, ctx: nctx, started: started}
	}
	stdout, stderr := orDiscard(stdio.Stdout), orDiscard(stdio.Stderr)
	opts := []cio.Opt{cio.WithStreams(stdin, stdout, stderr)}
	if spec.Tty {
		opts = append(opts, cio.WithTerminal)
	}
	// An ID of its own per exec: containerd keys a task's processes by it.
	execID := "exec-" + rand.Text()
	proc, err := s.tk.Exec(nctx, execID, &p, cio.NewCreator(opts...))
	if err != nil {
		return 0, fmt.Errorf("exec in task %s: %w", taskID, kind(err))
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(nctx), execCleanup)
		defer cancel()
		_, _ = proc.Delete(dctx, client.WithProcessKill)
	}()
	exitC, err := proc.Wait(nctx)
	if err != nil {
		return 0, fmt.Errorf("exec in task %s: wait: %w", taskID, kind(err))
	}
	if err := proc.Start(nctx); err != nil {
		if code, ok := startFailure(err); ok {
			proc.IO().Cancel()
			fmt.Fprintf(stderr, "%v\n", err)
			return code, nil
		}
		return 0, fmt.Errorf("exec in task %s: start: %w", taskID, kind(err))
	}
	started <- proc
	stopResize := make(chan struct{})
	defer close(stopResize)
	if spec.Tty && stdio.Resize != nil {
		go func() {
			for {
				select {
				case <-stopResize:
					return
				case sz, ok := <-stdio.Resize:
					if !ok {
						return
					}
					if sz.Width > 0 && sz.Height > 0 {
						_ = proc.Resize(nctx, uint32(sz.Width), uint32(sz.Height))
					}
				}
			}
		}()
	}
	select {
	case st := <-exitC:
		// Every byte it wrote is copied once the FIFOs are drained.
		proc.IO().Wait()
		code, _, err := st.Result()
		if err != nil {
			return 0, fmt.Errorf("exec in task %s: %w", taskID, kind(err))
		}
		return int(code & 0xff), nil
	case <-ctx.Done():
		kctx, cancel := context.WithTimeout(context.WithoutCancel(nctx), execCleanup)
		defer cancel()
		_ = proc.Kill(kctx, 9)
		proc.IO().Cancel()
		return 0, ctx.Err()
	}
}

// startFailure maps a command the runtime could not start to docker exec's
// exit codes: 127 when it does not exist, 126 when it cannot be run.
func startFailure(err error) (int, bool) {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "executable file not found"), strings.Contains(msg, "no such file or directory"):
		return 127, true
	case strings.Contains(msg, "permission denied"), strings.Contains(msg, "exec format error"), strings.Contains(msg, "is a directory"):
		return 126, true
	}
	return 0, false
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// closingReader is an exec's stdin: once it ends, it closes the process's
// stdin in the shim (the FIFO's copy ending is not enough), after the
// process started.
type closingReader struct {
	r       io.Reader
	ctx     context.Context
	started <-chan client.Process
	once    sync.Once
}

func (c *closingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if err != nil {
		c.once.Do(func() {
			go func() {
				select {
				case p := <-c.started:
					cctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), execCleanup)
					defer cancel()
					// An error means the process ended meanwhile: nothing
					// is left to close.
					_ = p.CloseIO(cctx, client.WithStdinCloser)
				case <-c.ctx.Done():
				}
			}()
		})
	}
	return n, err
}
