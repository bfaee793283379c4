// Package simexec is a simulated executor: an sdk/executor.Executor that
// runs tasks in memory, so that one process can stand in for thousands of
// worker nodes in tests and benchmarks.
//
// A simulated task's process "runs" from Start until it is stopped, unless
// environment variables in its container spec say otherwise:
//
//	SHOAL_SIM_EXIT_AFTER=<duration>   the process exits by itself after this long
//	SHOAL_SIM_EXIT_CODE=<n>           ... with this exit code (default 0)
//	SHOAL_SIM_FAIL_PREPARE=<msg>      Prepare fails with msg
//	SHOAL_SIM_PREPARE_TIME=<duration> Prepare takes this long, reporting its
//	                                  progress as an image pull does
//	SHOAL_SIM_IGNORE_STOP=1           the process ignores the stop signal and
//	                                  is killed after the grace period (exit 137)
//	SHOAL_SIM_STDOUT=<lines>          the process writes these lines (separated
//	SHOAL_SIM_STDERR=<lines>          by newlines) to stdout and stderr when it
//	                                  starts, stdout's first
//	SHOAL_SIM_LOG_LINES=<n>           ... and then "line 1" to "line n" to stdout
//	SHOAL_SIM_HEALTHY_AFTER=<duration>   with a health check (the spec's):
//	SHOAL_SIM_UNHEALTHY_AFTER=<duration> the task is STARTING from its start,
//	                                  HEALTHY after the first, UNHEALTHY after
//	                                  the second (health.go)
//
// A process that honours the stop signal exits at once with code 0; one
// sent SIGKILL exits at once with code 137.
//
// It is cheap: a task is a small struct, its timers are time.AfterFunc, and
// no goroutine exists for it unless a caller blocks in Wait, Stop or Logs.
// A task's logs take memory only when its environment asks for lines.
//
// The executor's state is its memory: unlike a real executor, nothing
// survives the Executor value. Share the value to simulate an agent that
// restarts while its tasks keep running.
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

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// The environment variables that control a simulated task.
const (
	EnvExitAfter   = "SHOAL_SIM_EXIT_AFTER"
	EnvExitCode    = "SHOAL_SIM_EXIT_CODE"
	EnvFailPrepare = "SHOAL_SIM_FAIL_PREPARE"
	EnvPrepareTime = "SHOAL_SIM_PREPARE_TIME"
	EnvIgnoreStop  = "SHOAL_SIM_IGNORE_STOP"
	EnvStdout      = "SHOAL_SIM_STDOUT"
	EnvStderr      = "SHOAL_SIM_STDERR"
	EnvLogLines    = "SHOAL_SIM_LOG_LINES"
	// EnvHealthyAfter and EnvUnhealthyAfter: see health.go.
	EnvHealthyAfter   = "SHOAL_SIM_HEALTHY_AFTER"
	EnvUnhealthyAfter = "SHOAL_SIM_UNHEALTHY_AFTER"
)

// KilledExitCode is the exit code of a process killed after its grace
// period: 128 + SIGKILL, as a shell or container runtime reports it.
const KilledExitCode = 128 + executor.SIGKILL

const (
	// maxLogLines bounds SHOAL_SIM_LOG_LINES: a simulation that asks for
	// more is a typo, not a test, and would hold it all in memory.
	maxLogLines = 1_000_000
	// prepareSteps is how many progress messages a timed Prepare reports.
	prepareSteps = 10
)

var _ executor.Executor = (*Executor)(nil)

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
	// behaviour, from the spec
	exitAfter   time.Duration
	exitCode    int
	ignoreStop  bool
	stopSignal  string
	prepareTime time.Duration
	output      []executor.LogEntry // written at start; Time is set then
	health      simHealth
	files       []*objectv1.TaskFile // Prepare's, copied (files.go)

	phase  phase
	status executor.ExitStatus // once exited
	pid    int                 // while running
	done   chan struct{}       // made by Start, closed on exit
	timer  *time.Timer         // the exit-after timer
	killer *time.Timer         // the kill after a stop's grace
	log    executor.MemLog     // written so far; ended on exit or removal
}

// New returns an Executor holding no tasks.
func New(cfg Config) *Executor {
	return &Executor{cfg: cfg, tasks: map[string]*task{}, starts: map[string]int{}}
}

// Prepare creates the simulated task from its spec, keeping its files (one
// for each secret and config it references: see Files). A task already
// held is left as it is.
func (e *Executor) Prepare(ctx context.Context, t *objectv1.Task, files []*objectv1.TaskFile, progress func(string)) error {
	if t.GetId() == "" {
		return fmt.Errorf("prepare: task has no id: %w", sdk.ErrInvalidArgument)
	}
	e.mu.Lock()
	_, held := e.tasks[t.GetId()]
	e.mu.Unlock()
	if held {
		return nil
	}
	st, err := parseSpec(t)
	if err != nil {
		return err
	}
	if err := checkFiles(t, files); err != nil {
		return err
	}
	st.files = cloneFiles(files)
	if st.prepareTime > 0 {
		if err := pull(ctx, t, st.prepareTime, progress); err != nil {
			return err
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.tasks[t.GetId()]; !ok {
		e.tasks[t.GetId()] = st
	}
	return nil
}

// pull simulates an image pull that takes d, reporting its progress.
func pull(ctx context.Context, t *objectv1.Task, d time.Duration, progress func(string)) error {
	image := t.GetSpec().GetContainer().GetImage()
	step := time.NewTicker(d / prepareSteps)
	defer step.Stop()
	for i := 1; i <= prepareSteps; i++ {
		select {
		case <-ctx.Done():
			return fmt.Errorf("prepare %s: pull %s: %w", t.GetId(), image, ctx.Err())
		case <-step.C:
		}
		if progress != nil {
			progress(fmt.Sprintf("pulling %s: %d%%", image, i*100/prepareSteps))
		}
	}
	return nil
}

// parseSpec reads a task's behaviour from its spec; the last setting of an
// environment variable wins, as in a process's environment.
func parseSpec(t *objectv1.Task) (*task, error) {
	id, c := t.GetId(), t.GetSpec().GetContainer()
	st := &task{id: id, stopSignal: c.GetStopSignal()}
	if _, err := executor.ParseSignal(st.stopSignal); err != nil {
		return nil, fmt.Errorf("prepare %s: spec.container.stop_signal: %w", id, err)
	}
	st.health.checked = hasHealthcheck(c.GetHealthcheck())
	var stdout, stderr []string
	lines := 0
	for _, kv := range c.GetEnv() {
		k, v, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case EnvFailPrepare:
			if v == "" {
				v = "simulated failure"
			}
			return nil, fmt.Errorf("prepare %s: %s", id, v)
		case EnvExitAfter:
			st.exitAfter, err = positive(v)
		case EnvPrepareTime:
			st.prepareTime, err = positive(v)
		case EnvExitCode:
			st.exitCode, err = strconv.Atoi(v)
			if err == nil && (st.exitCode < 0 || st.exitCode > 255) {
				err = errors.New("must be 0 to 255")
			}
		case EnvIgnoreStop:
			st.ignoreStop, err = strconv.ParseBool(v)
		case EnvHealthyAfter:
			st.health.healthyAfter, err = positive(v)
		case EnvUnhealthyAfter:
			st.health.unhealthyAfter, err = positive(v)
		case EnvStdout:
			stdout = strings.Split(v, "\n")
		case EnvStderr:
			stderr = strings.Split(v, "\n")
		case EnvLogLines:
			lines, err = strconv.Atoi(v)
			if err == nil && (lines < 0 || lines > maxLogLines) {
				err = fmt.Errorf("must be 0 to %d", maxLogLines)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("prepare %s: %s=%q: %w: %w", id, k, v, err, sdk.ErrInvalidArgument)
		}
	}
	if n := len(stdout) + len(stderr) + lines; n > 0 {
		st.output = make([]executor.LogEntry, 0, n)
		for _, l := range stdout {
			st.output = append(st.output, executor.LogEntry{Stream: executor.Stdout, Line: []byte(l)})
		}
		for _, l := range stderr {
			st.output = append(st.output, executor.LogEntry{Stream: executor.Stderr, Line: []byte(l)})
		}
		for i := 1; i <= lines; i++ {
			st.output = append(st.output, executor.LogEntry{Stream: executor.Stdout, Line: []byte("line " + strconv.Itoa(i))})
		}
	}
	return st, nil
}

func positive(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err == nil && d <= 0 {
		err = errors.New("must be positive")
	}
	return d, err
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
	t.health.startedAt = time.Now()
	e.starts[taskID]++
	if len(t.output) > 0 {
		now := time.Now()
		for i := range t.output {
			t.output[i].Time = now
		}
		t.log.Append(t.output...)
		t.output = nil
	}
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
	t.phase, t.pid = exited, 0
	t.status = executor.ExitStatus{ExitCode: code, ExitedAt: time.Now()}
	for _, tm := range []*time.Timer{t.timer, t.killer} {
		if tm != nil {
			tm.Stop()
		}
	}
	t.timer, t.killer = nil, nil
	close(t.done)
	t.log.End()
}

// Wait blocks until the task's process exits and returns how it ended.
func (e *Executor) Wait(ctx context.Context, taskID string) (executor.ExitStatus, error) {
	e.mu.Lock()
	t, err := e.get(taskID)
	if err != nil {
		e.mu.Unlock()
		return executor.ExitStatus{}, err
	}
	switch t.phase {
	case prepared:
		e.mu.Unlock()
		return executor.ExitStatus{}, fmt.Errorf("wait %s: task not started: %w", taskID, sdk.ErrFailedPrecondition)
	case exited:
		e.mu.Unlock()
		return t.status, nil
	}
	done := t.done
	e.mu.Unlock()
	select {
	case <-ctx.Done():
		return executor.ExitStatus{}, fmt.Errorf("wait %s: %w", taskID, ctx.Err())
	case <-done:
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return t.status, nil
}

// Stop stops the task's process: at once, or after grace for a task that
// ignores the stop signal. It returns once the process exited.
func (e *Executor) Stop(ctx context.Context, taskID string, signal string, grace time.Duration) error {
	e.mu.Lock()
	t, err := e.get(taskID)
	if err != nil || t.phase != running {
		e.mu.Unlock()
		return err
	}
	if signal == "" {
		signal = t.stopSignal
	}
	sig, err := executor.ParseSignal(signal)
	if err != nil {
		e.mu.Unlock()
		return fmt.Errorf("stop %s: %w", taskID, err)
	}
	switch {
	case sig == executor.SIGKILL:
		e.exitLocked(t, KilledExitCode)
		e.mu.Unlock()
		return nil
	case !t.ignoreStop:
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

// Remove forgets the task, its logs and its files, killing its process if
// it runs.
func (e *Executor) Remove(_ context.Context, taskID string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.tasks[taskID]
	if !ok {
		return nil
	}
	e.exitLocked(t, KilledExitCode)
	delete(e.tasks, taskID)
	t.log.End()
	return nil
}

// List returns every task held, ordered by ID.
func (e *Executor) List(context.Context) ([]executor.TaskInfo, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]executor.TaskInfo, 0, len(e.tasks))
	for _, id := range slices.Sorted(maps.Keys(e.tasks)) {
		out = append(out, e.tasks[id].describe())
	}
	return out, nil
}

// Inspect returns one task.
func (e *Executor) Inspect(_ context.Context, taskID string) (executor.TaskInfo, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, err := e.get(taskID)
	if err != nil {
		return executor.TaskInfo{}, err
	}
	return t.describe(), nil
}

// Logs sends the lines the task's process wrote.
func (e *Executor) Logs(ctx context.Context, taskID string, opts executor.LogOptions, emit func(executor.LogEntry) error) error {
	e.mu.Lock()
	t, err := e.get(taskID)
	e.mu.Unlock()
	if err != nil {
		return err
	}
	return t.log.Send(ctx, opts, emit)
}

// Stats returns zeros: a simulated process uses nothing.
func (e *Executor) Stats(_ context.Context, taskID string) (executor.Stats, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.get(taskID); err != nil {
		return executor.Stats{}, err
	}
	return executor.Stats{Time: time.Now()}, nil
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
func (t *task) describe() executor.TaskInfo {
	et := executor.TaskInfo{TaskID: t.id, ContainerID: "sim-" + t.id, Pid: t.pid}
	switch t.phase {
	case running:
		et.Running = true
		et.Health, et.HealthOutput = t.health.now()
	case exited:
		et.Exited, et.ExitCode = true, t.status.ExitCode
	}
	return et
}

// NodeDescription describes a simulated worker called name as the tests'
// workers report themselves: linux/amd64, 4 CPUs and 8 GiB.
func NodeDescription(name string) *objectv1.NodeDescription {
	return &objectv1.NodeDescription{
		Hostname: name, Platform: "linux/amd64", Executor: "simulated", EngineVersion: "test",
		Resources: &objectv1.Resources{NanoCpus: 4e9, MemoryBytes: 8 << 30},
	}
}
