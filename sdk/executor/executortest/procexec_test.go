//go:build linux

package executortest_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// procExec is a complete executor that runs a task's command as a plain
// process of the test, in its own process group: the reference the kit
// is tested against, with real signals, exit codes and pipes. Its state
// (procState) is shared by every procExec made over it, as a containerd
// namespace is shared by every plugin process that opens it.
type procExec struct{ s *procState }

type procState struct {
	mu    sync.Mutex
	tasks map[string]*proc
}

type proc struct {
	id      string
	command []string
	signal  string // the spec's stop signal
	started bool
	exited  bool
	status  executor.ExitStatus
	pid     int
	done    chan struct{}   // closed once exited, every line read
	log     executor.MemLog // ended on exit or removal
}

var _ executor.Executor = procExec{}

func newProcState() *procState { return &procState{tasks: map[string]*proc{}} }

func (e procExec) get(id string) (*proc, error) {
	p, ok := e.s.tasks[id]
	if !ok {
		return nil, fmt.Errorf("task %s: %w", id, sdk.ErrNotFound)
	}
	return p, nil
}

func (e procExec) Prepare(_ context.Context, t *objectv1.Task, _ []*objectv1.TaskFile, _ func(string)) error {
	c := t.GetSpec().GetContainer()
	var fe sdk.FieldErrors
	if t.GetId() == "" {
		fe.Add("task.id", "is required")
	}
	if len(c.GetCommand()) == 0 {
		fe.Add("task.spec.container.command", "is required to run image %q as a host process", c.GetImage())
	}
	if _, err := executor.ParseSignal(c.GetStopSignal()); err != nil {
		fe.Add("task.spec.container.stop_signal", "%v", err)
	}
	if err := fe.Err(); err != nil {
		return err
	}
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	if _, ok := e.s.tasks[t.GetId()]; !ok {
		e.s.tasks[t.GetId()] = &proc{id: t.GetId(), command: c.GetCommand(), signal: c.GetStopSignal(), done: make(chan struct{})}
	}
	return nil
}

func (e procExec) Start(_ context.Context, id string) error {
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	p, err := e.get(id)
	if err != nil || p.started {
		return err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command(p.command[0], p.command[1:]...)
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return fmt.Errorf("start %s: %w", id, err)
	}
	p.started, p.pid = true, cmd.Process.Pid
	var readers sync.WaitGroup
	for _, r := range []struct {
		f      *os.File
		stream executor.LogStream
	}{{outR, executor.Stdout}, {errR, executor.Stderr}} {
		readers.Go(func() { e.read(p, r.f, r.stream) })
	}
	go func() {
		werr := cmd.Wait()
		// The process was the task: what it left behind dies with it, as
		// in a container whose first process exited.
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		readers.Wait()
		st := executor.ExitStatus{ExitedAt: time.Now()}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			st.ExitCode = 128 + int(ws.Signal())
		} else if werr == nil || cmd.ProcessState != nil {
			st.ExitCode = cmd.ProcessState.ExitCode()
		}
		e.s.mu.Lock()
		p.exited, p.status, p.pid = true, st, 0
		close(p.done)
		p.log.End()
		e.s.mu.Unlock()
	}()
	return nil
}

// read appends the lines of one of p's streams to its logs.
func (e procExec) read(p *proc, f *os.File, stream executor.LogStream) {
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			if line[len(line)-1] == '\n' {
				line = line[:len(line)-1]
			}
			p.log.Append(executor.LogEntry{Stream: stream, Time: time.Now(), Line: line})
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				panic(err)
			}
			return
		}
	}
}

func (e procExec) Wait(ctx context.Context, id string) (executor.ExitStatus, error) {
	e.s.mu.Lock()
	p, err := e.get(id)
	if err == nil && !p.started {
		err = fmt.Errorf("wait %s: not started: %w", id, sdk.ErrFailedPrecondition)
	}
	e.s.mu.Unlock()
	if err != nil {
		return executor.ExitStatus{}, err
	}
	select {
	case <-ctx.Done():
		return executor.ExitStatus{}, ctx.Err()
	case <-p.done:
	}
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	return p.status, nil
}

func (e procExec) Stop(ctx context.Context, id string, signal string, grace time.Duration) error {
	e.s.mu.Lock()
	p, err := e.get(id)
	if err != nil || !p.started || p.exited {
		e.s.mu.Unlock()
		return err
	}
	if signal == "" {
		signal = p.signal
	}
	sig, err := executor.ParseSignal(signal)
	pid := p.pid
	e.s.mu.Unlock()
	if err != nil {
		return err
	}
	_ = syscall.Kill(pid, syscall.Signal(sig))
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-p.done:
		return nil
	case <-timer.C:
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-p.done:
		return nil
	}
}

func (e procExec) Remove(ctx context.Context, id string) error {
	e.s.mu.Lock()
	p, ok := e.s.tasks[id]
	e.s.mu.Unlock()
	if !ok {
		return nil
	}
	if err := e.Stop(ctx, id, "SIGKILL", 0); err != nil {
		return err
	}
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	if e.s.tasks[id] == p {
		delete(e.s.tasks, id)
		p.log.End()
	}
	return nil
}

func (p *proc) info() executor.TaskInfo {
	ti := executor.TaskInfo{TaskID: p.id, Running: p.started && !p.exited, Exited: p.exited, ExitCode: p.status.ExitCode, Pid: p.pid}
	if p.started {
		ti.ContainerID = "proc-" + p.id
	}
	return ti
}

func (e procExec) List(context.Context) ([]executor.TaskInfo, error) {
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	var out []executor.TaskInfo
	for _, id := range slices.Sorted(maps.Keys(e.s.tasks)) {
		out = append(out, e.s.tasks[id].info())
	}
	return out, nil
}

func (e procExec) Inspect(_ context.Context, id string) (executor.TaskInfo, error) {
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	p, err := e.get(id)
	if err != nil {
		return executor.TaskInfo{}, err
	}
	return p.info(), nil
}

func (e procExec) Logs(ctx context.Context, id string, opts executor.LogOptions, emit func(executor.LogEntry) error) error {
	e.s.mu.Lock()
	p, err := e.get(id)
	e.s.mu.Unlock()
	if err != nil {
		return err
	}
	return p.log.Send(ctx, opts, emit)
}

func (e procExec) Stats(_ context.Context, id string) (executor.Stats, error) {
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	if _, err := e.get(id); err != nil {
		return executor.Stats{}, err
	}
	return executor.Stats{Time: time.Now()}, nil
}

// procConfig is procExec's [plugins.executor.config].
type procConfig struct {
	// Shell is unused; it gives the table a key to accept.
	Shell string `toml:"shell"`
}

func (e procExec) Configure(_ context.Context, node executor.NodeInfo, config []byte) error {
	if node.NodeID == "" {
		return sdk.FieldErrors{{Field: "node.node_id", Message: "is required"}}
	}
	var c procConfig
	return sdk.DecodeConfig(config, &c)
}
