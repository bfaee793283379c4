// Package simexec is a simulated executor: an agent.Executor that runs
// tasks in memory, so that one process can stand in for thousands of worker
// nodes in tests and benchmarks.
//
// A simulated task's process "runs" from Start until it is stopped, unless
// environment variables in its container spec say otherwise:
//
//	SHOAL_SIM_EXIT_AFTER=<duration>  the process exits by itself after this long
//	SHOAL_SIM_EXIT_CODE=<n>          ... with this exit code (default 0)
//	SHOAL_SIM_FAIL_PREPARE=<msg>     Prepare fails with msg
//	SHOAL_SIM_IGNORE_STOP=1          the process ignores the stop signal and
//	                                 is killed after the grace period (exit 137)
//
// A process that honours the stop signal exits at once with code 0.
//
// It is cheap: a task is a small struct, its timers are time.AfterFunc, and
// no goroutine exists for it unless a caller blocks in Wait or Stop.
package simexec

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoalhq/shoal/kernel/agent"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// The environment variables that control a simulated task.
const (
	EnvExitAfter   = "SHOAL_SIM_EXIT_AFTER"
	EnvExitCode    = "SHOAL_SIM_EXIT_CODE"
	EnvFailPrepare = "SHOAL_SIM_FAIL_PREPARE"
	EnvIgnoreStop  = "SHOAL_SIM_IGNORE_STOP"
)

// KilledExitCode is the exit code of a process killed after its grace
// period: 128 + SIGKILL, as a shell or container runtime reports it.
const KilledExitCode = 137

var (
	_ agent.Executor  = (*Executor)(nil)
	_ agent.Inspector = (*Executor)(nil)
)

// Config configures an Executor.
type Config struct {
	// StartDelay is how long Start takes, as a container runtime takes
	// time to start a process. Default: 0.
	StartDelay time.Duration
}

// Executor runs simulated tasks. It is safe for concurrent use.
type Executor struct {
	cfg Config

	mu      sync.Mutex
	tasks   map[string]*task
	starts  map[string]int // by task ID, kept after Remove
	lastPid int
}

type phase uint8

const (
	prepared phase = iota
	running
	exited
)

// task is one simulated task.
type task struct {
	id string
	// behaviour, from the spec's environment
	exitAfter  time.Duration
	exitCode   int
	ignoreStop bool

	phase  phase
	code   int           // exit code once exited
	pid    int           // while running
	done   chan struct{} // made by Start, closed on exit
	timer  *time.Timer   // the exit-after timer
	killer *time.Timer   // the kill after a stop's grace
}

// New returns an Executor holding no tasks.
func New(cfg Config) *Executor {
	return &Executor{cfg: cfg, tasks: map[string]*task{}, starts: map[string]int{}}
}

// Prepare creates the simulated task from its spec. A task already held is
// left as it is.
func (e *Executor) Prepare(_ context.Context, t *objectv1.Task) error {
	if t.GetId() == "" {
		return fmt.Errorf("prepare: task has no id: %w", sdk.ErrInvalidArgument)
	}
	st, err := parseEnv(t.GetId(), t.GetSpec().GetContainer().GetEnv())
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.tasks[t.GetId()]; ok {
		return nil
	}
	e.tasks[t.GetId()] = st
	return nil
}

// parseEnv reads a task's behaviour from its environment; the last setting
// of a variable wins, as in a process's environment.
func parseEnv(id string, env []string) (*task, error) {
	t := &task{id: id}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case EnvFailPrepare:
			if v == "" {
				v = "simulated failure"
			}
			return nil, fmt.Errorf("prepare %s: %s", id, v)
		case EnvExitAfter:
			t.exitAfter, err = time.ParseDuration(v)
			if err == nil && t.exitAfter <= 0 {
				err = errors.New("must be positive")
			}
		case EnvExitCode:
			t.exitCode, err = strconv.Atoi(v)
			if err == nil && (t.exitCode < 0 || t.exitCode > 255) {
				err = errors.New("must be 0 to 255")
			}
		case EnvIgnoreStop:
			t.ignoreStop, err = strconv.ParseBool(v)
		}
		if err != nil {
			return nil, fmt.Errorf("prepare %s: %s=%q: %w: %w", id, k, v, err, sdk.ErrInvalidArgument)
		}
	}
	return t, nil
}

// Start starts a prepared task's process, after Config.StartDelay.
func (e *Executor) Start(ctx context.Context, taskID string) error {
	e.mu.Lock()
	t, err := e.get(taskID)
	if err == nil && t.phase == exited {
		err = fmt.Errorf("start %s: task already ran: %w", taskID, sdk.ErrFailedPrecondition)
	}
	started := err == nil && t.phase == running
	e.mu.Unlock()
	if err != nil || started {
		return err
	}
	if e.cfg.StartDelay > 0 {
		delay := time.NewTimer(e.cfg.StartDelay)
		defer delay.Stop()
		select {
		case <-ctx.Done():
			return fmt.Errorf("start %s: %w", taskID, ctx.Err())
		case <-delay.C:
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tasks[taskID] != t || t.phase != prepared {
		return fmt.Errorf("start %s: task changed while starting: %w", taskID, sdk.ErrFailedPrecondition)
	}
	e.lastPid++
	t.phase, t.pid, t.done = running, e.lastPid, make(chan struct{})
	e.starts[taskID]++
	if t.exitAfter > 0 {
		t.timer = time.AfterFunc(t.exitAfter, func() { e.exit(t, t.exitCode) })
	}
	return nil
}

// exit ends t's process with code, if it still runs.
func (e *Executor) exit(t *task, code int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.exitLocked(t, code)
}

func (e *Executor) exitLocked(t *task, code int) {
	if t.phase != running {
		return
	}
	t.phase, t.code, t.pid = exited, code, 0
	for _, tm := range []*time.Timer{t.timer, t.killer} {
		if tm != nil {
			tm.Stop()
		}
	}
	t.timer, t.killer = nil, nil
	close(t.done)
}

// Wait blocks until the task's process exits and returns its exit code.
func (e *Executor) Wait(ctx context.Context, taskID string) (int, error) {
	e.mu.Lock()
	t, err := e.get(taskID)
	if err != nil {
		e.mu.Unlock()
		return 0, err
	}
	switch t.phase {
	case prepared:
		e.mu.Unlock()
		return 0, fmt.Errorf("wait %s: task not started: %w", taskID, sdk.ErrFailedPrecondition)
	case exited:
		e.mu.Unlock()
		return t.code, nil
	}
	done := t.done
	e.mu.Unlock()
	select {
	case <-ctx.Done():
		return 0, fmt.Errorf("wait %s: %w", taskID, ctx.Err())
	case <-done:
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return t.code, nil
}

// Stop stops the task's process: at once, or after grace for a task that
// ignores the stop signal. It returns once the process exited.
func (e *Executor) Stop(ctx context.Context, taskID string, grace time.Duration) error {
	e.mu.Lock()
	t, err := e.get(taskID)
	if err != nil || t.phase != running {
		e.mu.Unlock()
		return err
	}
	if !t.ignoreStop {
		e.exitLocked(t, 0)
		e.mu.Unlock()
		return nil
	}
	if t.killer == nil { // a second Stop does not push the kill back
		t.killer = time.AfterFunc(max(grace, 0), func() { e.exit(t, KilledExitCode) })
	}
	done := t.done
	e.mu.Unlock()
	select {
	case <-ctx.Done():
		return fmt.Errorf("stop %s: %w", taskID, ctx.Err())
	case <-done:
		return nil
	}
}

// Remove forgets the task, killing its process if it runs.
func (e *Executor) Remove(_ context.Context, taskID string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.tasks[taskID]
	if !ok {
		return nil
	}
	e.exitLocked(t, KilledExitCode)
	delete(e.tasks, taskID)
	return nil
}

// List returns every task held, ordered by ID.
func (e *Executor) List(context.Context) ([]agent.ExecutorTask, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]agent.ExecutorTask, 0, len(e.tasks))
	for _, id := range slices.Sorted(maps.Keys(e.tasks)) {
		out = append(out, e.tasks[id].describe())
	}
	return out, nil
}

// Inspect returns one task.
func (e *Executor) Inspect(_ context.Context, taskID string) (agent.ExecutorTask, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, err := e.get(taskID)
	if err != nil {
		return agent.ExecutorTask{}, err
	}
	return t.describe(), nil
}

// Starts returns how many times a task with this ID was started, removed
// tasks included: tests check that a task is never started twice.
func (e *Executor) Starts(taskID string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.starts[taskID]
}

// get returns a held task. e.mu is held.
func (e *Executor) get(taskID string) (*task, error) {
	t, ok := e.tasks[taskID]
	if !ok {
		return nil, fmt.Errorf("task %s: %w", taskID, sdk.ErrNotFound)
	}
	return t, nil
}

// describe returns t as the agent sees it. The executor's mutex is held.
func (t *task) describe() agent.ExecutorTask {
	et := agent.ExecutorTask{TaskID: t.id, ContainerID: "sim-" + t.id, Pid: t.pid}
	switch t.phase {
	case running:
		et.Running = true
	case exited:
		et.Exited, et.ExitCode = true, t.code
	}
	return et
}
