package ctrexec

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"

	"github.com/shoalhq/shoal/sdk/executor"
)

// Once a task's process has exited, the executor records how it ended in
// its container's labels and deletes containerd's task (finalize). Deleting
// it is what ends the task's output: the shim holds the write ends of the
// log driver's pipes until then, so only then does the driver see the end
// of both streams, write its last lines and its marker. It also ends the
// task's shim process, which would otherwise stay for every exited task.
// The labels keep the exit status in the namespace, the executor's state.
const (
	labelExitCode = "io.shoal.exit.code"
	labelExitedAt = "io.shoal.exit.at"
	labelOOM      = "io.shoal.exit.oom"
)

// recordedExit returns the exit status recorded on a container, if any.
func recordedExit(labels map[string]string) (executor.ExitStatus, bool) {
	code, ok := labels[labelExitCode]
	if !ok {
		return executor.ExitStatus{}, false
	}
	es := executor.ExitStatus{OOMKilled: labels[labelOOM] == "true"}
	es.ExitCode, _ = strconv.Atoi(code)
	es.ExitedAt, _ = time.Parse(time.RFC3339Nano, labels[labelExitedAt])
	return es, true
}

// finalize records the exit of tk's process, which has exited, on ctr and
// deletes tk. It is idempotent: a finalize cut short (the labels written,
// the task not deleted) is completed by the next.
func (e *Executor) finalize(ctx context.Context, ctr client.Container, tk client.Task) (executor.ExitStatus, error) {
	// Wait and a following Logs may finalize the same task at once.
	unlock, err := e.finalizing.lock(ctx, ctr.ID())
	if err != nil {
		return executor.ExitStatus{}, err
	}
	defer unlock()
	labels, err := ctr.Labels(ctx)
	if err != nil {
		return executor.ExitStatus{}, kind(err)
	}
	es, recorded := recordedExit(labels)
	if !recorded {
		exited, err := tk.Wait(ctx)
		if err != nil {
			return executor.ExitStatus{}, kind(err)
		}
		st := <-exited
		code, at, err := st.Result()
		if err != nil {
			return executor.ExitStatus{}, kind(err)
		}
		// Read before the delete removes the cgroup.
		es = executor.ExitStatus{ExitCode: int(code), ExitedAt: at, OOMKilled: oomKilled(ctx, tk)}
		if _, err := ctr.SetLabels(ctx, map[string]string{
			labelExitCode: strconv.Itoa(es.ExitCode),
			labelExitedAt: es.ExitedAt.UTC().Format(time.RFC3339Nano),
			labelOOM:      strconv.FormatBool(es.OOMKilled),
		}); err != nil {
			return executor.ExitStatus{}, fmt.Errorf("record exit: %w", kind(err))
		}
	}
	if _, err := tk.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		// The shim exits once its task is deleted: a delete that raced
		// another one sees its connection close.
		if _, terr := ctr.Task(ctx, nil); !errdefs.IsNotFound(terr) {
			return executor.ExitStatus{}, fmt.Errorf("delete exited process: %w", kind(err))
		}
	}
	return es, nil
}

// state is what a container's task is: not started, running, or exited
// (with its status, recorded or still held by containerd).
type state struct {
	ctr     client.Container
	tk      client.Task // nil when containerd holds no task
	running bool
	exited  bool
	exit    executor.ExitStatus // when exited and recorded
	// recorded says the exit is in the labels (finalized, or half).
	recorded bool
}

// stateOf reads a container's task state.
func stateOf(ctx context.Context, ctr client.Container) (state, error) {
	s := state{ctr: ctr}
	labels, err := ctr.Labels(ctx)
	if err != nil {
		return s, kind(err)
	}
	s.exit, s.recorded = recordedExit(labels)
	s.exited = s.recorded
	tk, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return s, nil
	}
	if err != nil {
		return s, kind(err)
	}
	s.tk = tk
	if s.recorded {
		return s, nil
	}
	st, err := tk.Status(ctx)
	if errdefs.IsNotFound(err) {
		s.tk = nil
		return s, nil
	}
	if err != nil {
		return s, kind(err)
	}
	switch st.Status {
	case client.Running, client.Paused, client.Pausing:
		s.running = true
	case client.Stopped:
		s.exited = true
		s.exit = executor.ExitStatus{ExitCode: int(st.ExitStatus), ExitedAt: st.ExitTime}
	}
	return s, nil
}
