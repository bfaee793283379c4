// Package executor is the SDK for executor plugins: how a node runs tasks.
//
// An executor plugin is a program whose main calls Serve with a value that
// implements Executor:
//
//	func main() { executor.Serve(newContainerd()) }
//
// Name its binary in the node's config, [plugins.executor] path = "...".
// Test it with one call to the conformance kit, executortest.Run, which
// runs it in process and over gRPC.
//
// The kernel's side of the wire is Client (an Executor over gRPC, which
// validates the plugin's replies and returns sdk kinds); Plugin is the
// go-plugin glue and NewServer the gRPC server, for serving an executor
// without go-plugin. The wire format is sdk/proto/shoal/executor/v1.
//
// The executor owns the tasks it runs: they keep running when the plugin or
// the agent restarts, and a new plugin process finds them again (List,
// Inspect). The kernel makes at most one of Prepare, Start, Stop and Remove
// at a time for one task; Wait, Logs, Stats, Inspect and List may overlap
// anything (Exec too), and calls for different tasks run concurrently. Errors carry sdk kinds
// (sdk.ErrNotFound for a task the executor does not hold,
// sdk.ErrInvalidArgument for a task spec it cannot run) so the kernel can
// tell a task's fault from a transient one.
package executor

import (
	"context"
	"time"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// Executor runs tasks on one node.
type Executor interface {
	// Prepare makes the task ready to start: pulls its image when the node
	// does not have it, creates its container (and its network attachments,
	// when the task has any). Preparing a task the executor already holds
	// returns nil. progress, when not nil, is called with short human
	// messages ("pulling registry.local/web:1: 12.5 MB of 40 MB") that the
	// kernel shows in the task's status; it must not block for long.
	// Errors naming what failed ("pull registry.local/web:1: not found") end
	// the task; the message is what the user sees. files carry the data of
	// the task's secrets and configs, one per reference in its spec: the
	// executor keeps them off the node's disk (on memory the container
	// mounts read-only, secrets at /run/secrets/TARGET, configs at their
	// target) and drops them with the task. An executor that cannot do so
	// fails a task that has any.
	Prepare(ctx context.Context, task *objectv1.Task, files []*objectv1.TaskFile, progress func(message string)) error

	// Start starts a prepared task's process. Starting a task that runs
	// returns nil; starting an unknown task is sdk.ErrNotFound.
	Start(ctx context.Context, taskID string) error

	// Wait blocks until the task's process exits and returns how it ended,
	// or returns ctx's error when ctx ends first. For a process that already
	// exited it returns at once. When it returns the exit status, every
	// line the process wrote is in the task's logs, and the task's network
	// attachments are released: the kernel reports the task ended and the
	// manager may give its addresses (and published ports) to another task
	// right after, while the task itself (container, logs) stays until
	// Remove, so that its logs can still be read.
	Wait(ctx context.Context, taskID string) (ExitStatus, error)

	// Stop sends signal (empty: the task's stop signal, else SIGTERM) to
	// the process, sends SIGKILL once grace has passed, and returns once the
	// process exited or ctx ended. Stopping a task that does not run
	// returns nil (an unknown task: nil or sdk.ErrNotFound). A signal
	// ParseSignal does not know is sdk.ErrInvalidArgument. A Stop whose
	// ctx ends does not take the kill back: the process is still killed
	// once grace has passed. When Stop returns nil the process is not
	// running (or never ran) and, as after Wait, the task's network
	// attachments are released: the kernel stops a task that will not
	// run again before it reports it ended.
	Stop(ctx context.Context, taskID string, signal string, grace time.Duration) error

	// Remove deletes the task and everything Prepare made for it, killing
	// its process if it still runs. Its logs go with it. Removing an
	// unknown task returns nil. A Wait or a following Logs of the task
	// returns (Wait with the kill's exit status or sdk.ErrNotFound).
	Remove(ctx context.Context, taskID string) error

	// List returns every task the executor holds, running or not, so a
	// restarted agent adopts what runs instead of starting it again.
	List(ctx context.Context) ([]TaskInfo, error)

	// Inspect returns one task as the executor holds it, or sdk.ErrNotFound.
	Inspect(ctx context.Context, taskID string) (TaskInfo, error)

	// Logs sends the task's log lines to emit, in order within each stream,
	// beginning with the last opts.Tail lines of both streams together
	// (all when Tail < 0, none when 0). With opts.Follow it then sends new
	// lines as they are written until ctx ends (returning ctx's error) or
	// the task's process has exited and every line is sent (returning
	// nil); following a task not started yet waits for its start. emit is
	// called from one goroutine at a time; its error stops Logs, which
	// returns it.
	Logs(ctx context.Context, taskID string, opts LogOptions, emit func(LogEntry) error) error

	// Stats returns the task's resource use now, or sdk.ErrNotFound.
	Stats(ctx context.Context, taskID string) (Stats, error)

	// Execer runs a command in a running task (exec.go).
	Execer
}

// Configurer is implemented by executors that take settings from
// [plugins.executor.config]. Configure is called once per plugin start,
// before anything else, with the table as TOML text (empty when unset) and
// the node's facts; decode the text with sdk.DecodeConfig.
type Configurer interface {
	Configure(ctx context.Context, node NodeInfo, config []byte) error
}

// NodeInfo is what the kernel tells an executor about its node.
type NodeInfo struct {
	// NodeID is the node's ID in the cluster.
	NodeID string
	// StateDir is a directory the executor owns, under the node's data
	// directory; it survives restarts.
	StateDir string
	// ContainerdAddress is the containerd socket the node runs or was
	// configured with; empty when the node has none.
	ContainerdAddress string
}

// ExitStatus is how a task's process ended.
type ExitStatus struct {
	// ExitCode is the process's exit code; 128+N when killed by signal N.
	ExitCode int
	// ExitedAt is when it exited.
	ExitedAt time.Time
	// OOMKilled says the kernel's OOM killer ended it.
	OOMKilled bool
}

// TaskInfo is a task as the executor holds it.
type TaskInfo struct {
	TaskID string
	// Running says its process runs.
	Running bool
	// Exited says its process ran and exited with ExitCode. A task neither
	// running nor exited is prepared and not started.
	Exited   bool
	ExitCode int
	// ContainerID and Pid identify the container and its process.
	ContainerID string
	Pid         int
	// Health is what the task's health check says while its process runs
	// (objectv1.TaskHealth_TASK_HEALTH_UNSPECIFIED: it has none). The
	// executor runs the check, the spec's (ContainerSpec.healthcheck) or
	// else the image's; once it says UNHEALTHY the kernel stops the task
	// and fails it with HealthOutput. The kernel learns it through Inspect.
	Health objectv1.TaskHealth
	// HealthOutput is the last check's output, at most MaxHealthOutput
	// bytes, and how it ended, for people.
	HealthOutput string
}

// MaxHealthOutput bounds TaskInfo.HealthOutput, as docker bounds a health
// check's output (4 KiB).
const MaxHealthOutput = 4096

// LogStream names a task's output stream.
type LogStream int

// The streams a task writes.
const (
	Stdout LogStream = 1
	Stderr LogStream = 2
)

// String returns "stdout" or "stderr".
func (s LogStream) String() string {
	switch s {
	case Stdout:
		return "stdout"
	case Stderr:
		return "stderr"
	}
	return "unknown"
}

// LogOptions select which lines Logs sends.
type LogOptions struct {
	// Follow keeps sending new lines until the task exits or ctx ends.
	Follow bool
	// Tail is how many of the last lines to start with; < 0 means all,
	// 0 none (with Follow: only new lines).
	Tail int
}

// LogEntry is one line a task wrote.
type LogEntry struct {
	Stream LogStream
	// Time is when the executor read the line.
	Time time.Time
	// Line is the line's bytes without its newline.
	Line []byte
}

// Stats is a task's resource use.
type Stats struct {
	// CPUNanos is the CPU time used since start, in nanoseconds.
	CPUNanos uint64
	// MemoryBytes is the memory in use now; MemoryLimitBytes its limit
	// (0: none).
	MemoryBytes      uint64
	MemoryLimitBytes uint64
	Time             time.Time
}
