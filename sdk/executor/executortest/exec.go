package executortest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
)

// ExecBehaviour is what a command run with Exec does: it writes Stdout and
// Stderr (a line each, when not empty), then, with Cat, copies its stdin
// to stdout until EOF, then exits with ExitCode.
type ExecBehaviour struct {
	Stdout, Stderr string
	Cat            bool
	ExitCode       int
}

// ShellExec is a Config.Exec for tasks whose image has a POSIX shell at
// /bin/sh: the command is a script doing what b says.
func ShellExec(b ExecBehaviour) []string {
	var s strings.Builder
	if b.Stdout != "" {
		fmt.Fprintf(&s, "echo %s; ", quote(b.Stdout))
	}
	if b.Stderr != "" {
		fmt.Fprintf(&s, "echo %s >&2; ", quote(b.Stderr))
	}
	if b.Cat {
		s.WriteString("cat; ")
	}
	fmt.Fprintf(&s, "exit %d", b.ExitCode)
	return []string{"/bin/sh", "-c", s.String()}
}

// syncBuffer is a bytes.Buffer safe for the executor's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// exec runs a command behaving as b in task id, with stdin when not nil.
func (h *harness) exec(ctx context.Context, e executor.Executor, id string, b ExecBehaviour, stdin *string) (code int, stdout, stderr string, err error) {
	var out, errOut syncBuffer
	stdio := executor.ExecIO{Stdout: &out, Stderr: &errOut}
	if stdin != nil {
		stdio.Stdin = strings.NewReader(*stdin)
	}
	code, err = e.Exec(ctx, id, executor.ExecSpec{Cmd: h.cfg.Exec(b)}, stdio)
	return code, out.String(), errOut.String(), err
}

func checkExec(t *testing.T, h *harness) {
	e := h.open(t)
	id := h.start(t, e, Behaviour{Sleep: Forever})
	ctx, cancel := h.ctx(t)
	defer cancel()

	b := ExecBehaviour{Stdout: "exec out", Stderr: "exec err", ExitCode: 3}
	code, out, errOut, err := h.exec(ctx, e, id, b, nil)
	if err != nil || code != 3 || out != "exec out\n" || errOut != "exec err\n" {
		t.Errorf("Exec(%s, %q) = %d, %v with stdout %q, stderr %q; want 3, nil with stdout %q, stderr %q",
			id, h.cfg.Exec(b), code, err, out, errOut, "exec out\n", "exec err\n")
	}

	in := "line 1\nline 2\n"
	b = ExecBehaviour{Cat: true}
	code, out, _, err = h.exec(ctx, e, id, b, &in)
	if err != nil || code != 0 || out != in {
		t.Errorf("Exec(%s, %q) with stdin %q = %d, %v with stdout %q; want 0, nil with stdout its stdin", id, h.cfg.Exec(b), in, code, err, out)
	}

	// A command without stdin reads an empty one.
	code, out, _, err = h.exec(ctx, e, id, b, nil)
	if err != nil || code != 0 || out != "" {
		t.Errorf("Exec(%s, %q) without stdin = %d, %v with stdout %q; want 0, nil and no output", id, h.cfg.Exec(b), code, err, out)
	}

	// The task itself goes on.
	if ti := h.inspect(t, e, id); !ti.Running {
		t.Errorf("Inspect(%s) after Exec = %+v, want it running", id, ti)
	}

	if _, _, _, err := h.exec(ctx, e, h.prefix+"-never", ExecBehaviour{}, nil); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Exec(unknown task) = %v, want %v", err, sdk.ErrNotFound)
	}
	if _, err := e.Exec(ctx, id, executor.ExecSpec{}, executor.ExecIO{}); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("Exec(%s, no command) = %v, want %v", id, err, sdk.ErrInvalidArgument)
	}
	exited := h.start(t, e, Behaviour{})
	h.wait(t, e, exited)
	if _, _, _, err := h.exec(ctx, e, exited, ExecBehaviour{}, nil); !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Errorf("Exec(task that exited) = %v, want %v", err, sdk.ErrFailedPrecondition)
	}
}
