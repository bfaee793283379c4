package agent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/internal/retry"
	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

const (
	// retryBase and retryMax pace retries of executor calls that failed for
	// a reason other than the task itself (the executor plugin restarting,
	// say): soon enough to stop a task promptly once it is back, slow
	// enough not to spin on an executor that stays down.
	retryBase = 100 * time.Millisecond
	retryMax  = 5 * time.Second
	// exitCodeTimeout bounds the Wait that reads the exit code of a task
	// Stop just stopped: it has exited, so Wait only reads a number.
	exitCodeTimeout = 5 * time.Second
	// maxErrText bounds the error text of a status. Executor errors can be
	// long (a registry's whole answer); the dispatcher refuses a report
	// with more than 4 KiB of text, and a refused report would be resent
	// and refused after every reconnect. 1 KiB is plenty for `service ps`.
	maxErrText = 1024
)

// Task states, for brevity.
const (
	stateAccepted  = objectv1.TaskState_TASK_STATE_ACCEPTED
	statePreparing = objectv1.TaskState_TASK_STATE_PREPARING
	stateReady     = objectv1.TaskState_TASK_STATE_READY
	stateStarting  = objectv1.TaskState_TASK_STATE_STARTING
	stateRunning   = objectv1.TaskState_TASK_STATE_RUNNING
	stateComplete  = objectv1.TaskState_TASK_STATE_COMPLETE
	stateShutdown  = objectv1.TaskState_TASK_STATE_SHUTDOWN
	stateFailed    = objectv1.TaskState_TASK_STATE_FAILED
	stateRejected  = objectv1.TaskState_TASK_STATE_REJECTED
)

// stepResult says what a worker does after a step.
type stepResult int

const (
	stepMore   stepResult = iota // step again
	stepIdle                     // settled until the task changes
	stepForget                   // removed: drop the worker
)

// facts are what the worker knows of the task in the executor.
type facts struct {
	held     bool // the executor may hold something of the task: Remove it when dropped
	prepared bool // Prepare succeeded: the task can start
	running  bool // its process runs, as far as the worker knows
	exited   bool // its process ran and exited as exit says
	exit     executor.ExitStatus
}

// taskWorker reconciles one task: it drives the executor towards the
// task's desired state and reports each state the task reaches, never one
// below a state already reported.
type taskWorker struct {
	id  string
	set *taskSet

	// Guarded by set.mu.
	task    *objectv1.Task // latest assignment; nil for a task only the executor knew
	removed bool           // dropped from the assignment set
	gen     uint64         // bumped on every change of task or removed
	// files are the data of the task's secrets and configs, in memory
	// only, until Prepare handed them to the executor.
	files     []*objectv1.TaskFile
	active    bool // a goroutine runs work for this worker
	interrupt context.CancelFunc

	// Owned by the worker's goroutine (one at a time: see active).
	stepFiles   []*objectv1.TaskFile // files, as the current step started
	facts       facts
	status      *objectv1.TaskStatus // the latest state reported, or the manager's when further
	containerID string
	pid         int32
	failures    int // consecutive transient executor failures
	// health is what the task's health check says while it runs
	// (UNSPECIFIED: no check), reported in its RUNNING status; unhealthy
	// is the check's output once it said UNHEALTHY: the task is to be
	// stopped and failed (health.go).
	health    objectv1.TaskHealth
	unhealthy string
	inspected bool // health (and the IDs) came from Inspect, not a List at start
}

// dropFiles forgets the files once the executor holds them, unless a
// newer assignment brought others meanwhile.
func (w *taskWorker) dropFiles(held []*objectv1.TaskFile) {
	w.set.mu.Lock()
	defer w.set.mu.Unlock()
	if len(held) > 0 && len(w.files) > 0 && &w.files[0] == &held[0] {
		w.files = nil
	}
	w.stepFiles = nil
}

// mustNotRun reports whether the task must not run (any desired state but
// RUNNING: SHUTDOWN, REMOVE, or COMPLETE for a task that ended and is not to
// be restarted), or was dropped. set.mu is held.
func (w *taskWorker) mustNotRun() bool {
	return w.removed || w.task.GetDesiredState() != stateRunning
}

// adopt starts the worker from what the executor holds of the task.
func (w *taskWorker) adopt(et executor.TaskInfo) {
	w.facts = facts{held: true, prepared: true, running: et.Running, exited: et.Exited && !et.Running, exit: executor.ExitStatus{ExitCode: et.ExitCode}}
	w.containerID, w.pid = et.ContainerID, int32(et.Pid)
	if et.Running {
		w.health = et.Health
	}
}

// step makes one transition of the task, or waits for its process while it
// runs. ictx ends when ctx does, or when the task changes so that it must
// not run: long waits (Prepare, Wait, retries) use it to react at once.
func (w *taskWorker) step(ctx, ictx context.Context, t *objectv1.Task, removed bool) stepResult {
	if removed {
		return w.drop(ctx, ictx, t)
	}
	w.catchUp(t.GetStatus())
	if t.GetDesiredState() != stateRunning {
		return w.shutdown(ctx, ictx, t)
	}
	return w.reconcile(ctx, ictx, t)
}

// reconcile drives a task that is to run.
func (w *taskWorker) reconcile(ctx, ictx context.Context, t *objectv1.Task) stepResult {
	reported := w.status.GetState()
	switch {
	case reported >= stateComplete:
		// The manager holds the task as ended: it must not run, whatever
		// its desired state says (the orchestrator replaces ended tasks,
		// it never restarts one).
		if w.facts.running {
			return w.stop(ctx, ictx, t)
		}
		return stepIdle

	case w.facts.exited:
		return w.collectExit(ictx)

	case w.facts.running && w.unhealthy != "":
		return w.failUnhealthy(ctx, ictx, t)

	case w.facts.running:
		return w.waitRunning(ictx)

	case w.facts.prepared && reported >= stateRunning:
		// The container is there but its process is gone with no exit
		// recorded: the node (or its containerd) restarted under it. A
		// task is never started twice, so it has failed; the orchestrator
		// replaces it as its restart policy says, and its container stays
		// until then, with its logs.
		w.release(ctx, t)
		w.advance(stateFailed, "lost", "the task's process is gone without an exit status: the node or its container runtime restarted")
		return stepIdle

	case w.facts.prepared:
		return w.start(ctx, t)

	case reported >= stateRunning:
		// The task ran here once (the manager says so), but the executor
		// does not hold it: the node was reset. A task is never started
		// twice, so it has failed; the orchestrator replaces it.
		w.advance(stateFailed, "lost", "executor does not hold the task")
		return stepIdle
	}

	return w.prepare(ictx, t)
}

// collectExit reports the end of a task seen exited (adopted after a
// restart). Wait returns at once for it, and releases the task's networks
// before the end is reported, as after any exit.
func (w *taskWorker) collectExit(ictx context.Context) stepResult {
	es, err := w.set.exec.Wait(ictx, w.id)
	switch {
	case ictx.Err() != nil:
		return stepMore
	case err == nil:
		w.facts.exit = es
	case errors.Is(err, sdk.ErrNotFound):
		// Gone since: report the exit it was seen with.
	default:
		return w.retry(ictx, "wait", err)
	}
	w.finish(w.facts.exit)
	return stepIdle
}

// waitRunning reports a running task RUNNING and waits for its process to
// exit, watching its health check; it returns stepMore when the check said
// UNHEALTHY or ictx ended first.
func (w *taskWorker) waitRunning(ictx context.Context) stepResult {
	if !w.inspected {
		// Adopted after an agent restart: List says nothing of health
		// checks; Inspect does (and restarts the check in an executor
		// that restarted too).
		w.inspect(ictx)
	}
	w.advance(stateRunning, "started", "")
	es, err := w.waitWatchingHealth(ictx)
	switch {
	case errors.Is(err, errUnhealthy):
		return stepMore
	case ictx.Err() != nil:
		return stepMore // interrupted, or the agent stops
	case errors.Is(err, sdk.ErrNotFound):
		w.facts = facts{}
		w.advance(stateFailed, "lost", fmt.Sprintf("executor no longer holds the task: %v", err))
		return stepIdle
	case err != nil:
		return w.retry(ictx, "wait", err)
	}
	w.facts.running, w.facts.exited, w.facts.exit = false, true, es
	w.finish(es)
	return stepIdle
}

// start starts a prepared task, reporting READY, STARTING and then RUNNING,
// or FAILED when the executor refuses to start it. It uses ctx, not ictx:
// a start is not interrupted halfway.
func (w *taskWorker) start(ctx context.Context, t *objectv1.Task) stepResult {
	w.advance(stateReady, "prepared", "")
	w.advance(stateStarting, "starting", "")
	if err := w.set.exec.Start(ctx, w.id); err != nil {
		if ctx.Err() != nil {
			return stepMore
		}
		w.release(ctx, t)
		w.advance(stateFailed, "starting failed", fmt.Sprintf("start: %v", err))
		return stepIdle
	}
	w.facts.running = true
	w.inspect(ctx)
	w.advance(stateRunning, "started", "")
	return stepMore
}

// prepare prepares a task not prepared yet, reporting ACCEPTED, PREPARING
// and then READY, or REJECTED when the executor refuses it. A task the
// manager holds as PREPARING or STARTING was interrupted by an agent
// restart: preparing again is harmless (Prepare is idempotent), and the
// states already reported stay.
func (w *taskWorker) prepare(ictx context.Context, t *objectv1.Task) stepResult {
	exec := w.set.exec
	w.advance(stateAccepted, "accepted", "")
	w.advance(statePreparing, "preparing", "")
	p := newProgress(w.id, w.set.rep, w.status)
	err := exec.Prepare(ictx, t, w.stepFiles, p.update)
	p.close()
	if err != nil && !errors.Is(err, sdk.ErrAlreadyExists) {
		w.facts.held = true // a failed Prepare may leave something behind
		if ictx.Err() != nil {
			return stepMore
		}
		w.advance(stateRejected, "preparing failed", fmt.Sprintf("prepare: %v", err))
		return stepIdle
	}
	w.facts.held, w.facts.prepared = true, true
	// The executor holds the files now (on memory, for the container): the
	// agent keeps no copy of a secret longer than it must.
	w.dropFiles(w.stepFiles)
	w.advance(stateReady, "prepared", "")
	return stepMore
}

// shutdown settles a task that must not run: it stops it if it runs, and
// reports SHUTDOWN. A task that never started is not started.
func (w *taskWorker) shutdown(ctx, ictx context.Context, t *objectv1.Task) stepResult {
	switch {
	case w.facts.running:
		return w.stop(ctx, ictx, t)
	case w.status.GetState() >= stateComplete:
		return stepIdle
	case w.facts.exited:
		w.release(ctx, t)
		w.finish(w.facts.exit) // it ended by itself before anyone asked
	default:
		w.release(ctx, t)
		w.advance(stateShutdown, "shut down before it started", "")
	}
	return stepIdle
}

// release gives back what a task that will not run again holds besides
// its container (its network attachments; the manager frees their
// addresses once the task is reported ended): Stop does that for a task
// whose process does not run, as Wait does after an exit. A failure is
// logged, not retried: Remove releases them at the latest.
func (w *taskWorker) release(ctx context.Context, t *objectv1.Task) {
	if !w.facts.held {
		return
	}
	if err := w.set.exec.Stop(ctx, w.id, stopSignal(t), 0); err != nil && !errors.Is(err, sdk.ErrNotFound) && ctx.Err() == nil {
		w.set.log.Warn("releasing an ended task's networks", "task_id", w.id, "error", err)
	}
}

// stop stops the task's process and reports SHUTDOWN with its exit code.
func (w *taskWorker) stop(ctx, ictx context.Context, t *objectv1.Task) stepResult {
	exec := w.set.exec
	if err := exec.Stop(ctx, w.id, stopSignal(t), stopGrace(t)); err != nil && !errors.Is(err, sdk.ErrNotFound) {
		if ctx.Err() != nil {
			return stepMore
		}
		return w.retry(ictx, "stop", err)
	}
	w.facts.running = false
	wctx, cancel := context.WithTimeout(ctx, exitCodeTimeout)
	es, err := exec.Wait(wctx, w.id)
	cancel()
	if err == nil {
		w.facts.exited, w.facts.exit = true, es
	}
	if w.status.GetState() < stateComplete {
		w.advanceExit(stateShutdown, "shut down", "", es.ExitCode)
	}
	return stepIdle
}

// drop stops and removes a task dropped from the assignment set. Nothing
// is reported: the manager deleted the task.
func (w *taskWorker) drop(ctx, ictx context.Context, t *objectv1.Task) stepResult {
	exec := w.set.exec
	if w.facts.running {
		if err := exec.Stop(ctx, w.id, stopSignal(t), stopGrace(t)); err != nil && !errors.Is(err, sdk.ErrNotFound) {
			if ctx.Err() != nil {
				return stepMore
			}
			return w.retry(ictx, "stop", err)
		}
		w.facts.running = false
	}
	if w.facts.held {
		if err := exec.Remove(ctx, w.id); err != nil && !errors.Is(err, sdk.ErrNotFound) {
			if ctx.Err() != nil {
				return stepMore
			}
			return w.retry(ictx, "remove", err)
		}
	}
	w.facts = facts{}
	w.failures = 0
	return stepForget
}

// retry waits before the step is tried again, after an executor error that
// says nothing about the task itself.
func (w *taskWorker) retry(ctx context.Context, op string, err error) stepResult {
	b := backoff{base: retryBase, max: retryMax, failures: w.failures, randN: rand.Int64N}
	wait := b.next()
	w.failures = b.failures
	w.set.log.Warn("executor call failed", "task_id", w.id, "op", op, "error", err, "retry_in", wait)
	retry.Sleep(ctx, wait)
	return stepMore
}

// finish reports how the task's process ended.
func (w *taskWorker) finish(es executor.ExitStatus) {
	switch {
	case es.ExitCode == 0 && !es.OOMKilled:
		w.advanceExit(stateComplete, "finished", "", 0)
	case es.OOMKilled:
		w.advanceExit(stateFailed, "finished", fmt.Sprintf("task exited with code %d: out of memory", es.ExitCode), es.ExitCode)
	default:
		w.advanceExit(stateFailed, "finished", fmt.Sprintf("task exited with code %d", es.ExitCode), es.ExitCode)
	}
}

// inspect learns the container ID and process ID of a started task, when
// the executor can tell.
func (w *taskWorker) inspect(ctx context.Context) {
	et, err := w.set.exec.Inspect(ctx, w.id)
	if err != nil {
		w.set.log.Debug("inspect task", "task_id", w.id, "error", err)
		return
	}
	if et.ContainerID != "" {
		w.containerID = et.ContainerID
	}
	w.pid = int32(et.Pid)
	w.health = et.Health
	w.inspected = true
}

// catchUp takes the manager's view of the task's status when it is further
// than the agent's own: the worker then only reports states beyond it. That
// is how a restarted agent, which lost its own reports, avoids reporting a
// task backwards.
func (w *taskWorker) catchUp(st *objectv1.TaskStatus) {
	if st.GetState() > w.status.GetState() {
		w.status = st
		if w.containerID == "" {
			w.containerID = st.GetContainerId()
		}
	}
}

func (w *taskWorker) advance(state objectv1.TaskState, msg, errText string) {
	w.advanceExit(state, msg, errText, 0)
}

// advanceExit reports that the task reached state, unless it already
// reported that state or a later one.
func (w *taskWorker) advanceExit(state objectv1.TaskState, msg, errText string, exitCode int) {
	if state <= w.status.GetState() {
		return
	}
	w.failures = 0
	st := &objectv1.TaskStatus{
		Timestamp:   timestamppb.Now(),
		State:       state,
		Message:     msg,
		Err:         truncate(errText, maxErrText),
		ExitCode:    int32(exitCode),
		ContainerId: w.containerID,
	}
	switch {
	case state == stateRunning:
		st.Pid = w.pid
		st.Health = w.health
	case state == stateFailed && w.unhealthy != "":
		st.Health = objectv1.TaskHealth_TASK_HEALTH_UNHEALTHY
	}
	w.status = st
	w.set.rep.report(w.id, st)
	w.set.log.Debug("task state", "task_id", w.id, "state", state.String(), "error", errText)
}

// truncate cuts s to at most n bytes, on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "..."
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
