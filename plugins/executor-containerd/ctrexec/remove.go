package ctrexec

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"

	"github.com/shoalhq/shoal/sdk"
)

// Remove kills the task's process if it runs and deletes the task, its
// container, snapshot, network attachments, task files, the tmpfs of its
// secrets and configs, and its logs.
func (e *Executor) Remove(ctx context.Context, taskID string) error {
	if err := checkTaskID(taskID); err != nil {
		return err
	}
	e.health.stop(taskID)
	nctx, c, err := e.conn(ctx)
	if err != nil {
		return err
	}
	ctr, err := c.LoadContainer(nctx, taskID)
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("task %s: %w", taskID, kind(err))
	}
	netns := ""
	if err == nil {
		labels, err := ctr.Labels(nctx)
		if err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("task %s: %w", taskID, kind(err))
		}
		netns = labels[labelNetns]
		if err := e.deleteTask(nctx, ctr); err != nil {
			return fmt.Errorf("task %s: %w", taskID, err)
		}
		if err := ctr.Delete(nctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("task %s: delete container: %w", taskID, kind(err))
		}
	}
	e.mu.RLock()
	network, dir, filesDir, refsDir := e.net, e.taskLogDir(taskID), e.taskFilesDir(taskID), e.taskRefsDir(taskID)
	e.mu.RUnlock()
	// Detach even without the label: a Prepare that failed between Attach
	// and the container's creation leaves an attachment without one.
	if network != nil {
		if err := network.Detach(nctx, taskID); err != nil {
			return fmt.Errorf("task %s: detach networks: %w", taskID, err)
		}
	} else if netns != "" {
		return fmt.Errorf("task %s: attached to networks (%s) but this executor has no task networking: %w", taskID, netns, sdk.ErrFailedPrecondition)
	}
	// Without the label too: a Prepare cut short before the container's
	// creation leaves the files without one.
	if err := os.RemoveAll(filesDir); err != nil {
		return fmt.Errorf("task %s: resolv.conf, hosts and hostname: %w", taskID, err)
	}
	if err := removeRefFiles(refsDir); err != nil {
		return fmt.Errorf("task %s: secrets and configs: %w", taskID, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("task %s: logs: %w", taskID, err)
	}
	e.log.Debug("task removed", "task_id", taskID)
	return nil
}

// deleteTask SIGKILLs the container's process if it runs and deletes it.
func (e *Executor) deleteTask(ctx context.Context, ctr client.Container) error {
	tk, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return kind(err)
	}
	st, err := tk.Status(ctx)
	if err != nil && !errdefs.IsNotFound(err) {
		return kind(err)
	}
	if st.Status == client.Running || st.Status == client.Paused || st.Status == client.Pausing {
		waitCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		exited, err := tk.Wait(waitCtx)
		if err != nil {
			return kind(err)
		}
		if err := tk.Kill(ctx, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("SIGKILL: %w", kind(err))
		}
		select {
		case <-exited:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	_, err = tk.Delete(ctx, client.WithProcessKill)
	// The shim exits once its last task is deleted, and may close its
	// connection before containerd has its answer ("ttrpc: closed"), or
	// die in between; containerd then cleans the task up after the dead
	// shim. What counts is whether the task is gone: look again, and delete
	// again, for a little while.
	for attempt := 0; err != nil && !errdefs.IsNotFound(err) && attempt < 20; attempt++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		var again client.Task
		if again, err = ctr.Task(ctx, nil); err == nil {
			_, err = again.Delete(ctx, client.WithProcessKill)
		}
	}
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete process: %w", kind(err))
	}
	return nil
}
