package ctrexec

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"

	"github.com/shoalhq/shoal/plugins/executor-containerd/logdriver"
	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
)

// Start starts the task's process, its output going to its log files.
func (e *Executor) Start(ctx context.Context, taskID string) error {
	ctx, c, err := e.conn(ctx)
	if err != nil {
		return err
	}
	ctr, err := e.load(ctx, c, taskID)
	if err != nil {
		return err
	}
	s, err := stateOf(ctx, ctr)
	if err != nil {
		return fmt.Errorf("task %s: %w", taskID, err)
	}
	switch {
	case s.exited:
		return fmt.Errorf("task %s: its process already ran and exited with %d: %w", taskID, s.exit.ExitCode, sdk.ErrFailedPrecondition)
	case s.running:
		return nil
	}
	tk := s.tk
	if tk == nil {
		e.mu.RLock()
		driver, dir, limits := e.driver, e.taskLogDir(taskID), e.cfg.logLimits()
		e.mu.RUnlock()
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("task %s: logs: %w", taskID, err)
		}
		tk, err = ctr.NewTask(ctx, cio.BinaryIO(driver, logdriver.Args(dir, limits)))
		if errdefs.IsAlreadyExists(err) {
			tk, err = ctr.Task(ctx, nil) // created concurrently
		}
		if err != nil {
			return fmt.Errorf("task %s: create process: %w", taskID, kind(err))
		}
	}
	if err := tk.Start(ctx); err != nil {
		return fmt.Errorf("task %s: start: %w", taskID, kind(err))
	}
	e.startHealth(ctx, ctr)
	e.log.Debug("task started", "task_id", taskID, "pid", tk.Pid())
	return nil
}

// Wait waits for the task's process to exit, records how it ended and
// deletes containerd's task (see finalize), which ends its log streams;
// once the log driver has written the last lines it returns, so that Logs
// right after Wait has them all. The shim keeps a process's exit status
// until then, and the labels after, so Wait works the same on a process
// that exited long ago, or while the plugin was down.
func (e *Executor) Wait(ctx context.Context, taskID string) (_ executor.ExitStatus, err error) {
	defer ctxFirst(ctx, &err)
	nctx, c, err := e.conn(ctx)
	if err != nil {
		return executor.ExitStatus{}, err
	}
	ctr, err := e.load(nctx, c, taskID)
	if err != nil {
		return executor.ExitStatus{}, err
	}
	s, err := stateOf(nctx, ctr)
	if err != nil {
		return executor.ExitStatus{}, fmt.Errorf("task %s: %w", taskID, err)
	}
	if s.tk == nil {
		if s.recorded {
			return s.exit, e.release(nctx, taskID)
		}
		return executor.ExitStatus{}, fmt.Errorf("task %s: not started: %w", taskID, sdk.ErrFailedPrecondition)
	}
	if !s.exited {
		exited, err := s.tk.Wait(nctx)
		if err != nil {
			return executor.ExitStatus{}, fmt.Errorf("task %s: wait: %w", taskID, kind(err))
		}
		select {
		case <-ctx.Done():
			return executor.ExitStatus{}, ctx.Err()
		case st := <-exited:
			if _, _, err := st.Result(); err != nil {
				if cerr := ctxErr(ctx); cerr != nil {
					return executor.ExitStatus{}, cerr
				}
				return executor.ExitStatus{}, fmt.Errorf("task %s: wait: %w", taskID, kind(err))
			}
		}
	}
	e.health.stop(taskID)
	es, err := e.finalize(nctx, ctr, s.tk)
	if err != nil {
		return executor.ExitStatus{}, fmt.Errorf("task %s: %w", taskID, err)
	}
	if err := e.release(nctx, taskID); err != nil {
		return executor.ExitStatus{}, err
	}
	e.awaitLogs(ctx, taskID)
	return es, nil
}

// release detaches the networks of a task whose process has exited, before
// Wait reports the exit: the manager frees the task's addresses and ports
// once it is reported ended, while the container (and its logs) stays until
// Remove. Detach is idempotent, so every Wait of an exited task calls it.
// The task's secrets and configs go too: no process of it can read them
// any more, and a task never starts twice.
func (e *Executor) release(ctx context.Context, taskID string) error {
	e.mu.RLock()
	refs := e.taskRefsDir(taskID)
	e.mu.RUnlock()
	if err := removeRefFiles(refs); err != nil {
		return fmt.Errorf("task %s: secrets and configs: %w", taskID, err)
	}
	e.mu.RLock()
	network := e.net
	e.mu.RUnlock()
	if network == nil {
		return nil
	}
	if err := network.Detach(ctx, taskID); err != nil {
		return fmt.Errorf("task %s: detach networks: %w", taskID, err)
	}
	return nil
}

// Stop signals the task's process, then SIGKILLs it once grace has passed,
// and returns once it exited, with the task's networks released.
func (e *Executor) Stop(ctx context.Context, taskID string, signal string, grace time.Duration) (err error) {
	defer ctxFirst(ctx, &err)
	e.health.stop(taskID)
	if err := e.stop(ctx, taskID, signal, grace); err != nil {
		return err
	}
	// The process is not running: its networks go back, as after Wait.
	nctx, _, err := e.conn(ctx)
	if err != nil {
		return err
	}
	return e.release(nctx, taskID)
}

// stop is Stop up to the process's end.
func (e *Executor) stop(ctx context.Context, taskID string, signal string, grace time.Duration) error {
	nctx, c, err := e.conn(ctx)
	if err != nil {
		return err
	}
	ctr, err := e.load(nctx, c, taskID)
	if err != nil {
		return err
	}
	if signal == "" {
		labels, err := ctr.Labels(nctx)
		if err != nil {
			return fmt.Errorf("task %s: %w", taskID, kind(err))
		}
		signal = labels[labelStopSignal]
	}
	sig, err := executor.ParseSignal(signal)
	if err != nil {
		return fmt.Errorf("task %s: %w", taskID, err)
	}
	tk, err := ctr.Task(nctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("task %s: %w", taskID, kind(err))
	}
	st, err := tk.Status(nctx)
	if err != nil {
		return fmt.Errorf("task %s: status: %w", taskID, kind(err))
	}
	if st.Status != client.Running && st.Status != client.Paused && st.Status != client.Pausing {
		return nil
	}
	// Wait first, so that an exit right after the signal is not missed.
	waitCtx, cancel := context.WithCancel(nctx)
	defer cancel()
	exited, err := tk.Wait(waitCtx)
	if err != nil {
		return fmt.Errorf("task %s: wait: %w", taskID, kind(err))
	}
	if err := tk.Kill(nctx, syscall.Signal(sig)); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("task %s: signal %d: %w", taskID, sig, kind(err))
	}
	if sig != executor.SIGKILL {
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-exited:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		if err := tk.Kill(nctx, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("task %s: SIGKILL: %w", taskID, kind(err))
		}
		e.log.Debug("task killed after its grace period", "task_id", taskID, "grace", grace)
	}
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
