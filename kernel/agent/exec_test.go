package agent

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
)

// Exec of the fake executor prints its command's words, then copies its
// stdin, and exits 0; a task it does not run is an error as the contract
// says.
func (f *fakeExec) Exec(ctx context.Context, taskID string, spec executor.ExecSpec, stdio executor.ExecIO) (int, error) {
	f.mu.Lock()
	t := f.tasks[taskID]
	running := t != nil && t.running
	f.mu.Unlock()
	switch {
	case t == nil:
		return 0, fmt.Errorf("task %s: %w", taskID, sdk.ErrNotFound)
	case !running:
		return 0, fmt.Errorf("task %s does not run: %w", taskID, sdk.ErrFailedPrecondition)
	}
	if stdio.Stdout != nil {
		fmt.Fprintln(stdio.Stdout, strings.Join(spec.Cmd, " "))
		if stdio.Stdin != nil {
			_, _ = io.Copy(stdio.Stdout, stdio.Stdin)
		}
	}
	return 0, ctx.Err()
}
