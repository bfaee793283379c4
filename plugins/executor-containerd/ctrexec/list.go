package ctrexec

import (
	"context"
	"fmt"
	"strconv"

	apitasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"

	"github.com/shoalhq/shoal/sdk/executor"
)

// List returns every task in the namespace, from two calls to containerd
// whatever their number.
func (e *Executor) List(ctx context.Context) ([]executor.TaskInfo, error) {
	nctx, c, err := e.conn(ctx)
	if err != nil {
		return nil, err
	}
	ctrs, err := c.ContainerService().List(nctx, "labels."+strconv.Quote(labelTaskID))
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", kind(err))
	}
	procs, err := c.TaskService().List(nctx, &apitasks.ListTasksRequest{})
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", kind(errdefsFromGRPC(err)))
	}
	byID := make(map[string]*task.Process, len(procs.GetTasks()))
	for _, p := range procs.GetTasks() {
		byID[p.GetID()] = p
	}
	out := make([]executor.TaskInfo, 0, len(ctrs))
	for _, ctr := range ctrs {
		out = append(out, taskInfo(ctr.ID, ctr.Labels, byID[ctr.ID]))
	}
	return out, nil
}

// Inspect returns one task.
func (e *Executor) Inspect(ctx context.Context, taskID string) (executor.TaskInfo, error) {
	nctx, c, err := e.conn(ctx)
	if err != nil {
		return executor.TaskInfo{}, err
	}
	ctr, err := e.load(nctx, c, taskID)
	if err != nil {
		return executor.TaskInfo{}, err
	}
	labels, err := ctr.Labels(nctx)
	if err != nil {
		return executor.TaskInfo{}, fmt.Errorf("task %s: %w", taskID, kind(err))
	}
	resp, err := c.TaskService().Get(nctx, &apitasks.GetRequest{ContainerID: taskID})
	if errdefs.IsNotFound(errdefsFromGRPC(err)) {
		e.health.stop(taskID)
		return taskInfo(taskID, labels, nil), nil
	}
	if err != nil {
		return executor.TaskInfo{}, fmt.Errorf("task %s: %w", taskID, kind(errdefsFromGRPC(err)))
	}
	info := taskInfo(taskID, labels, resp.GetProcess())
	e.inspectHealth(nctx, ctr, &info)
	return info, nil
}

// taskInfo is a container with its labels and its process p (nil: none in
// containerd: not started, or exited and finalized).
func taskInfo(id string, labels map[string]string, p *task.Process) executor.TaskInfo {
	info := executor.TaskInfo{TaskID: id, ContainerID: id}
	if es, ok := recordedExit(labels); ok {
		info.Exited, info.ExitCode = true, es.ExitCode
		return info
	}
	if p == nil {
		return info
	}
	info.Pid = int(p.GetPid())
	switch p.GetStatus() {
	case task.Status_RUNNING, task.Status_PAUSED, task.Status_PAUSING:
		info.Running = true
	case task.Status_STOPPED:
		info.Exited = true
		info.ExitCode = int(p.GetExitStatus())
	}
	return info
}
