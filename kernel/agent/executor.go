package agent

import (
	"context"
	"time"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// Executor runs tasks on this node. It is declared here, where it is
// consumed; kernel/simexec implements it in memory, and the executor plugin
// (issue 5) will implement it over gRPC.
//
// The agent never overlaps calls for one task; calls for different tasks
// may run concurrently. The executor owns the tasks: they keep running when
// the agent stops, and a restarted agent finds them again with List.
//
// Errors of kind sdk.ErrNotFound mean the executor does not hold the task.
// Other errors of Wait, Stop and Remove are taken as transient and retried;
// errors of Prepare and Start end the task (REJECTED and FAILED).
type Executor interface {
	// Prepare makes the task ready to start: pulls its image, creates its
	// container. Preparing a task the executor already holds returns nil
	// (or an error of kind sdk.ErrAlreadyExists, which the agent treats
	// the same): after an agent restart it may be asked again.
	Prepare(ctx context.Context, t *objectv1.Task) error
	// Start starts a prepared task's process. Starting a task that runs
	// returns nil.
	Start(ctx context.Context, taskID string) error
	// Wait blocks until the task's process exits and returns its exit
	// code, or returns ctx's error when ctx ends first. For a process that
	// already exited it returns at once.
	Wait(ctx context.Context, taskID string) (exitCode int, err error)
	// Stop asks the process to stop, kills it after grace, and returns once
	// it exited (or ctx ended). Stopping a task that does not run returns
	// nil.
	Stop(ctx context.Context, taskID string, grace time.Duration) error
	// Remove deletes the task and everything Prepare made for it, killing
	// its process if it still runs. Removing an unknown task returns nil.
	Remove(ctx context.Context, taskID string) error
	// List returns every task the executor holds, so that a restarted
	// agent adopts the tasks that still run instead of starting them again.
	List(ctx context.Context) ([]ExecutorTask, error)
}

// ExecutorTask is a task as the executor holds it.
type ExecutorTask struct {
	TaskID string
	// Running says its process runs.
	Running bool
	// Exited says its process ran and exited with ExitCode. A task neither
	// running nor exited is prepared and not started.
	Exited   bool
	ExitCode int
	// ContainerID and Pid identify the container and its process, when the
	// executor knows them; the agent puts them in the task's status.
	ContainerID string
	Pid         int
}

// Inspector is an optional capability of an Executor: it describes one task
// without listing them all. The agent uses it, when the executor has it, to
// put a started task's container ID and process ID in its RUNNING status.
type Inspector interface {
	// Inspect returns the task as the executor holds it, or an error of
	// kind sdk.ErrNotFound.
	Inspect(ctx context.Context, taskID string) (ExecutorTask, error)
}
