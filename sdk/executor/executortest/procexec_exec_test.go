//go:build linux

package executortest_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
)

// Exec runs the command as a plain process of the test beside the task's
// (a process has no container to enter), with the task's stdio rules.
func (e procExec) Exec(ctx context.Context, id string, spec executor.ExecSpec, stdio executor.ExecIO) (int, error) {
	if len(spec.Cmd) == 0 {
		return 0, sdk.FieldErrors{{Field: "cmd", Message: "is required"}}
	}
	e.s.mu.Lock()
	p, err := e.get(id)
	running := err == nil && p.started && !p.exited
	e.s.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if !running {
		return 0, fmt.Errorf("task %s does not run: %w", id, sdk.ErrFailedPrecondition)
	}
	cmd := exec.CommandContext(ctx, spec.Cmd[0], spec.Cmd[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio.Stdin, stdio.Stdout, stdio.Stderr
	cmd.Env = append(cmd.Environ(), spec.Env...)
	cmd.Dir = spec.WorkingDir
	err = cmd.Run()
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode() & 0xff, nil
	case errors.Is(err, exec.ErrNotFound):
		return 127, nil
	case err != nil:
		return 0, err
	}
	return 0, nil
}
