package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// fakeExec is an in-memory Executor that records each call with the state
// the agent had reported for the task when it was made, so that a test sees
// both what the agent did and that it reported before doing it.
type fakeExec struct {
	rep *reporter

	mu           sync.Mutex
	tasks        map[string]*fakeTask
	calls        []string
	prepareErr   map[string]error
	startErr     map[string]error
	waitErrs     map[string][]error // returned by the first Waits, in turn
	stopErrs     map[string][]error
	blockPrepare map[string]bool // Prepare blocks until its ctx ends
	// progress are the messages Prepare reports, one per step of a second
	// on the bubble's clock, before it returns.
	progress map[string][]string
}

type fakeTask struct {
	running, exited, oom bool
	code                 int
	done                 chan struct{}
}

func newFakeExec(rep *reporter) *fakeExec {
	return &fakeExec{
		rep: rep, tasks: map[string]*fakeTask{},
		prepareErr: map[string]error{}, startErr: map[string]error{},
		waitErrs: map[string][]error{}, stopErrs: map[string][]error{}, blockPrepare: map[string]bool{},
		progress: map[string][]string{},
	}
}

// record logs a call. f.mu is held.
func (f *fakeExec) record(op, id string, extra ...any) {
	reported := "none"
	if st := known(f.rep, id); st != nil {
		reported = strings.TrimPrefix(st.GetState().String(), "TASK_STATE_")
	}
	call := op + " " + id + " @" + reported
	for _, x := range extra {
		call += fmt.Sprint(" ", x)
	}
	f.calls = append(f.calls, call)
}

func (f *fakeExec) Prepare(ctx context.Context, t *objectv1.Task, files []*objectv1.TaskFile, progress func(string)) error {
	f.mu.Lock()
	f.record("prepare", t.GetId())
	block := f.blockPrepare[t.GetId()]
	msgs := f.progress[t.GetId()]
	f.mu.Unlock()
	for _, m := range msgs {
		progress(m)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.prepareErr[t.GetId()]; err != nil {
		return err
	}
	if f.tasks[t.GetId()] == nil {
		f.tasks[t.GetId()] = &fakeTask{done: make(chan struct{})}
	}
	return nil
}

func (f *fakeExec) Start(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("start", id)
	if err := f.startErr[id]; err != nil {
		return err
	}
	ft := f.tasks[id]
	if ft == nil {
		return sdk.ErrNotFound
	}
	ft.running = true
	return nil
}

func (f *fakeExec) Wait(ctx context.Context, id string) (executor.ExitStatus, error) {
	f.mu.Lock()
	f.record("wait", id)
	if errs := f.waitErrs[id]; len(errs) > 0 {
		f.waitErrs[id] = errs[1:]
		f.mu.Unlock()
		return executor.ExitStatus{}, errs[0]
	}
	ft := f.tasks[id]
	f.mu.Unlock()
	if ft == nil {
		return executor.ExitStatus{}, sdk.ErrNotFound
	}
	select {
	case <-ctx.Done():
		return executor.ExitStatus{}, ctx.Err()
	case <-ft.done:
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return executor.ExitStatus{ExitCode: ft.code, OOMKilled: ft.oom}, nil
}

func (f *fakeExec) Stop(_ context.Context, id string, signal string, grace time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("stop", id, signal, grace)
	if errs := f.stopErrs[id]; len(errs) > 0 {
		f.stopErrs[id] = errs[1:]
		return errs[0]
	}
	if ft := f.tasks[id]; ft != nil && ft.running {
		f.exitLocked(ft, 143)
	}
	return nil
}

func (f *fakeExec) Remove(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("remove", id)
	delete(f.tasks, id)
	return nil
}

func (f *fakeExec) List(context.Context) ([]executor.TaskInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []executor.TaskInfo
	for id, ft := range f.tasks {
		out = append(out, ft.info(id))
	}
	return out, nil
}

// Inspect is not recorded: the agent calls it only to learn a started
// task's container and process IDs.
func (f *fakeExec) Inspect(_ context.Context, id string) (executor.TaskInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ft := f.tasks[id]
	if ft == nil {
		return executor.TaskInfo{}, sdk.ErrNotFound
	}
	return ft.info(id), nil
}

func (ft *fakeTask) info(id string) executor.TaskInfo {
	ti := executor.TaskInfo{TaskID: id, Running: ft.running, Exited: ft.exited, ExitCode: ft.code}
	if ft.running {
		ti.ContainerID, ti.Pid = "c-"+id, 42
	}
	return ti
}

// Logs and Stats are not the reconciler's business.
func (f *fakeExec) Logs(context.Context, string, executor.LogOptions, func(executor.LogEntry) error) error {
	return errors.ErrUnsupported
}

func (f *fakeExec) Stats(context.Context, string) (executor.Stats, error) {
	return executor.Stats{}, errors.ErrUnsupported
}

func (f *fakeExec) exitLocked(ft *fakeTask, code int) {
	ft.running, ft.exited, ft.code = false, true, code
	close(ft.done)
}

// exit makes a running task's process exit.
func (f *fakeExec) exit(t *testing.T, id string, code int) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	ft := f.tasks[id]
	if ft == nil || !ft.running {
		t.Fatalf("exit(%s): task not running", id)
	}
	f.exitLocked(ft, code)
}

// oomKill makes a running task's process die of the OOM killer.
func (f *fakeExec) oomKill(t *testing.T, id string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	ft := f.tasks[id]
	if ft == nil || !ft.running {
		t.Fatalf("oomKill(%s): task not running", id)
	}
	ft.oom = true
	f.exitLocked(ft, 137)
}

// hold puts a task in the executor as a previous agent left it.
func (f *fakeExec) hold(id string, running bool, exitCode int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ft := &fakeTask{running: running, done: make(chan struct{})}
	if !running {
		ft.exited, ft.code = true, exitCode
		close(ft.done)
	}
	f.tasks[id] = ft
}

func (f *fakeExec) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

// known returns the latest status the reporter holds for a task, or nil.
func known(r *reporter, taskID string) *objectv1.TaskStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.latest[taskID]
}

// env is a task set under test with its fake executor.
type env struct {
	set  *taskSet
	exec *fakeExec
	rep  *reporter
}

// newEnv starts a task set in the test's bubble; held is what the executor
// holds at start.
func newEnv(t *testing.T, held func(f *fakeExec)) *env {
	rep := newReporter(100, 100*time.Millisecond)
	exec := newFakeExec(rep)
	if held != nil {
		held(exec)
	}
	set := newTaskSet("node-1", exec, rep, slog.New(slog.DiscardHandler))
	list, _ := exec.List(t.Context())
	set.adopt(list)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { set.run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &env{set: set, exec: exec, rep: rep}
}

// apply applies changes and lets the workers settle.
func (e *env) apply(t *testing.T, typ workerv1.AssignmentsType, changes ...*workerv1.AssignmentChange) {
	t.Helper()
	if err := e.set.apply(&workerv1.Assignments{Type: typ, Changes: changes}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	synctest.Wait()
}

// state returns the latest reported status of a task as "STATE exit=N err".
func (e *env) state(id string) string {
	st := known(e.rep, id)
	if st == nil {
		return "unknown"
	}
	s := strings.TrimPrefix(st.GetState().String(), "TASK_STATE_")
	if st.GetExitCode() != 0 {
		s += fmt.Sprintf(" exit=%d", st.GetExitCode())
	}
	if st.GetErr() != "" {
		s += " " + st.GetErr()
	}
	return s
}

const (
	complete    = workerv1.AssignmentsType_ASSIGNMENTS_TYPE_COMPLETE
	incremental = workerv1.AssignmentsType_ASSIGNMENTS_TYPE_INCREMENTAL
)

func task(id string, desired objectv1.TaskState, reported objectv1.TaskState) *objectv1.Task {
	return &objectv1.Task{
		Id: id, NodeId: "node-1", DesiredState: desired,
		Status: &objectv1.TaskStatus{State: reported},
		Spec:   &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "img", StopGracePeriod: durationpb.New(3 * time.Second)}},
	}
}

func update(t *objectv1.Task) *workerv1.AssignmentChange {
	return &workerv1.AssignmentChange{Action: workerv1.AssignmentChangeAction_ASSIGNMENT_CHANGE_ACTION_UPDATE, Task: t}
}

func remove(id string) *workerv1.AssignmentChange {
	return &workerv1.AssignmentChange{Action: workerv1.AssignmentChangeAction_ASSIGNMENT_CHANGE_ACTION_REMOVE, Task: &objectv1.Task{Id: id}}
}

const (
	assigned = objectv1.TaskState_TASK_STATE_ASSIGNED
	running  = objectv1.TaskState_TASK_STATE_RUNNING
	shutdown = objectv1.TaskState_TASK_STATE_SHUTDOWN
	done     = objectv1.TaskState_TASK_STATE_COMPLETE
)

func checkCalls(t *testing.T, e *env, want ...string) {
	t.Helper()
	if got := e.exec.takeCalls(); !slices.Equal(got, want) {
		t.Errorf("executor calls:\n got %q\nwant %q", got, want)
	}
}

func checkState(t *testing.T, e *env, id, want string) {
	t.Helper()
	if got := e.state(id); got != want {
		t.Errorf("status of %s = %q, want %q", id, got, want)
	}
}

func TestTaskRunsToCompletion(t *testing.T) {
	for _, tt := range []struct {
		code int
		want string
	}{
		{code: 0, want: "COMPLETE"},
		{code: 3, want: "FAILED exit=3 task exited with code 3"},
	} {
		t.Run(fmt.Sprint("exit ", tt.code), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t, nil)
				e.apply(t, complete, update(task("t1", running, assigned)))
				checkCalls(t, e, "prepare t1 @PREPARING", "start t1 @STARTING", "wait t1 @RUNNING")
				checkState(t, e, "t1", "RUNNING")
				e.exec.exit(t, "t1", tt.code)
				synctest.Wait()
				checkState(t, e, "t1", tt.want)
				// An ended task is never started again, whatever comes.
				e.apply(t, incremental, update(task("t1", running, running)))
				checkCalls(t, e)
				checkState(t, e, "t1", tt.want)
			})
		})
	}
}

func TestTaskFailsToPrepareOrStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		e.exec.prepareErr["bad-image"] = errors.New("image not found")
		e.exec.startErr["bad-cmd"] = errors.New("no such file")
		e.apply(t, complete, update(task("bad-image", running, assigned)), update(task("bad-cmd", running, assigned)))
		checkState(t, e, "bad-image", "REJECTED prepare: image not found")
		checkState(t, e, "bad-cmd", "FAILED start: no such file")
		calls := e.exec.takeCalls()
		slices.Sort(calls)
		// The task that failed to start is stopped, which releases its
		// networks before its end is reported.
		want := []string{"prepare bad-cmd @PREPARING", "prepare bad-image @PREPARING", "start bad-cmd @STARTING", "stop bad-cmd @STARTING SIGTERM 0s"}
		if !slices.Equal(calls, want) {
			t.Errorf("executor calls = %q, want %q", calls, want)
		}
	})
}

func TestTaskStopsWhenNotDesired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		e.apply(t, complete, update(task("t1", running, assigned)))
		e.exec.takeCalls()
		e.apply(t, incremental, update(task("t1", shutdown, running)))
		checkCalls(t, e, "stop t1 @RUNNING SIGTERM 3s", "wait t1 @RUNNING")
		checkState(t, e, "t1", "SHUTDOWN exit=143")
	})
}

func TestStopUsesTheSpecsSignal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		tk := task("t1", running, assigned)
		tk.Spec.Container.StopSignal = "SIGINT"
		tk.Spec.Container.StopGracePeriod = nil
		e.apply(t, complete, update(tk))
		e.exec.takeCalls()
		tk = task("t1", shutdown, running)
		tk.Spec.Container.StopSignal = "SIGINT"
		tk.Spec.Container.StopGracePeriod = nil
		e.apply(t, incremental, update(tk))
		checkCalls(t, e, "stop t1 @RUNNING SIGINT 10s", "wait t1 @RUNNING")
	})
}

func TestStopSignalFallsBack(t *testing.T) {
	for _, tt := range []struct{ spec, want string }{
		{"", "SIGTERM"}, {"SIGQUIT", "SIGQUIT"}, {"TERM", "TERM"}, {"SIGNOPE", "SIGTERM"}, {"0", "SIGTERM"},
	} {
		tk := task("t1", running, assigned)
		tk.Spec.Container.StopSignal = tt.spec
		if got := stopSignal(tk); got != tt.want {
			t.Errorf("stopSignal(stop_signal %q) = %q, want %q", tt.spec, got, tt.want)
		}
	}
}

func TestOOMKilledTaskSaysSo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		e.apply(t, complete, update(task("t1", running, assigned)))
		e.exec.oomKill(t, "t1")
		synctest.Wait()
		checkState(t, e, "t1", "FAILED exit=137 task exited with code 137: out of memory")
	})
}

func TestRunningStatusNamesTheContainer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		e.apply(t, complete, update(task("t1", running, assigned)))
		st := known(e.rep, "t1")
		if st.GetState() != running || st.GetContainerId() != "c-t1" || st.GetPid() != 42 {
			t.Errorf("status = %v, want RUNNING with container c-t1 and pid 42 (from Inspect)", st)
		}
	})
}

func TestPrepareProgressReachesTheStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		e.exec.progress["t1"] = []string{"pulling img: 10%", "pulling img: 60%\n"}
		e.exec.blockPrepare["t1"] = true
		e.apply(t, complete, update(task("t1", running, assigned)))
		st := known(e.rep, "t1")
		if st.GetState() != objectv1.TaskState_TASK_STATE_PREPARING || st.GetMessage() != "pulling img: 10%" {
			t.Errorf("status after the first progress = %v, want PREPARING with message %q", st, "pulling img: 10%")
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if st := known(e.rep, "t1"); st.GetMessage() != "pulling img: 60%" {
			t.Errorf("status a second later = %v, want message %q", st, "pulling img: 60%")
		}
		e.apply(t, incremental, update(task("t1", shutdown, objectv1.TaskState_TASK_STATE_PREPARING)))
		checkState(t, e, "t1", "SHUTDOWN")
	})
}

// TestProgressIsRateLimited feeds a chatty pull's messages, one every
// 300ms, and checks that at most one per progressInterval reaches the
// reporter, the latest at each turn, and nothing after close.
func TestProgressIsRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rep := newReporter(100, time.Second)
		preparing := &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_PREPARING, Message: "preparing"}
		p := newProgress("t1", rep, preparing)
		var seen []string
		last := ""
		observe := func() {
			synctest.Wait()
			if m := known(rep, "t1").GetMessage(); m != last {
				seen = append(seen, m)
				last = m
			}
		}
		for i := range 7 { // at 0, 0.3s, ... 1.8s
			p.update(fmt.Sprintf("m%d", i))
			observe()
			for range 3 {
				time.Sleep(100 * time.Millisecond)
				observe()
			}
		}
		time.Sleep(2 * progressInterval)
		observe()
		// m0 at once; m3 (waiting since 0.9s) at 1s; m6 (since 1.8s) at 2s.
		if want := []string{"m0", "m3", "m6"}; !slices.Equal(seen, want) {
			t.Errorf("messages reported = %q, want %q", seen, want)
		}
		p.update("m7") // more than a second after m6: would go at once
		p.close()
		p.update("m8")
		time.Sleep(2 * progressInterval)
		observe()
		if last != "m7" {
			t.Errorf("after close the message is %q, want m7 (nothing after close)", last)
		}
		p2 := newProgress("t2", rep, preparing)
		p2.update("first")
		p2.update("waits")
		p2.close()
		time.Sleep(2 * progressInterval)
		synctest.Wait()
		if m := known(rep, "t2").GetMessage(); m != "first" {
			t.Errorf("a message waiting at close was sent: latest %q, want %q", m, "first")
		}
		p3 := newProgress("t3", rep, preparing)
		p3.update(strings.Repeat("é", maxProgressText) + "\xff")
		if m := known(rep, "t3").GetMessage(); len(m) > maxProgressText || !utf8.ValidString(m) {
			t.Errorf("a long invalid message was reported as %d bytes, valid UTF-8 %v; want at most %d, valid", len(m), utf8.ValidString(m), maxProgressText)
		}
	})
}

func TestTaskNeverStartsWhenNotDesired(t *testing.T) {
	for _, desired := range []objectv1.TaskState{shutdown, done, objectv1.TaskState_TASK_STATE_REMOVE} {
		t.Run(desired.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t, nil)
				e.apply(t, complete, update(task("t1", desired, assigned)))
				checkCalls(t, e)
				checkState(t, e, "t1", "SHUTDOWN")
			})
		})
	}
}

func TestStopInterruptsPrepare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		e.exec.blockPrepare["t1"] = true
		e.apply(t, complete, update(task("t1", running, assigned)))
		checkCalls(t, e, "prepare t1 @PREPARING")
		e.apply(t, incremental, update(task("t1", shutdown, objectv1.TaskState_TASK_STATE_PREPARING)))
		// Stopped, not started: what Prepare attached is released before
		// the end is reported.
		checkCalls(t, e, "stop t1 @PREPARING SIGTERM 0s")
		checkState(t, e, "t1", "SHUTDOWN")
		// What the interrupted Prepare may have left is removed with the
		// task.
		e.apply(t, incremental, remove("t1"))
		checkCalls(t, e, "remove t1 @SHUTDOWN")
	})
}

func TestRemoveStopsAndForgets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		e.apply(t, complete, update(task("t1", running, assigned)), update(task("t2", running, assigned)))
		e.exec.takeCalls()
		e.apply(t, incremental, remove("t1"))
		checkCalls(t, e, "stop t1 @RUNNING SIGTERM 3s", "remove t1 @RUNNING")
		// A complete set without t2 drops it too.
		e.apply(t, complete)
		checkCalls(t, e, "stop t2 @RUNNING SIGTERM 3s", "remove t2 @RUNNING")
		if n := e.set.len(); n != 0 {
			t.Errorf("tasks after removal = %d, want 0", n)
		}
		if e.set.workers["t1"] != nil || e.set.workers["t2"] != nil {
			t.Error("removed tasks still have workers")
		}
		if known(e.rep, "t1") != nil || known(e.rep, "t2") != nil {
			t.Error("removed tasks' statuses are still kept for resending")
		}
	})
}

func TestTransientExecutorErrorsAreRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		unavailable := fmt.Errorf("executor restarting: %w", sdk.ErrUnavailable)
		e.exec.waitErrs["t1"] = []error{unavailable}
		e.exec.stopErrs["t1"] = []error{unavailable, unavailable}
		e.apply(t, complete, update(task("t1", running, assigned)))
		time.Sleep(retryMax) // past the first retry
		synctest.Wait()
		checkCalls(t, e, "prepare t1 @PREPARING", "start t1 @STARTING", "wait t1 @RUNNING", "wait t1 @RUNNING")
		e.apply(t, incremental, update(task("t1", shutdown, running)))
		time.Sleep(2 * retryMax)
		synctest.Wait()
		checkCalls(t, e, "stop t1 @RUNNING SIGTERM 3s", "stop t1 @RUNNING SIGTERM 3s", "stop t1 @RUNNING SIGTERM 3s", "wait t1 @RUNNING")
		checkState(t, e, "t1", "SHUTDOWN exit=143")
	})
}

func TestLostTaskFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		// The manager says it runs; the executor never heard of it.
		e.apply(t, complete, update(task("t1", running, running)))
		checkCalls(t, e)
		checkState(t, e, "t1", "FAILED executor does not hold the task")

		// It vanishes from the executor while it runs.
		e.apply(t, incremental, update(task("t2", running, assigned)))
		e.exec.takeCalls()
		e.exec.mu.Lock()
		delete(e.exec.tasks, "t2")
		e.exec.mu.Unlock()
		e.exec.waitErrs["t2"] = nil
		e.apply(t, incremental, update(task("t2", shutdown, running))) // interrupts Wait; the stop finds nothing
		checkState(t, e, "t2", "SHUTDOWN")
	})
}

func TestReportsNeverGoBackwards(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		// A task the manager holds as ended is neither run nor reported.
		e.apply(t, complete, update(task("t1", running, done)))
		checkCalls(t, e)
		checkState(t, e, "t1", "unknown")
		// One interrupted in STARTING by an agent restart is prepared
		// again silently, then started.
		e.apply(t, incremental, update(task("t2", running, objectv1.TaskState_TASK_STATE_STARTING)))
		checkCalls(t, e, "prepare t2 @none", "start t2 @none", "wait t2 @RUNNING")
		checkState(t, e, "t2", "RUNNING")
	})
}

func TestAdoptsWhatTheExecutorHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, func(f *fakeExec) {
			f.hold("runs", true, 0)
			f.hold("ended", false, 0)
			f.hold("failed", false, 2)
			f.hold("stray", true, 0)
			f.hold("stray-ended", false, 0)
		})
		// Before the complete set, nothing is touched.
		synctest.Wait()
		checkCalls(t, e)
		e.apply(t, complete,
			update(task("runs", running, running)),
			update(task("ended", running, running)),
			update(task("failed", running, running)))
		calls := e.exec.takeCalls()
		slices.Sort(calls)
		want := []string{
			"remove stray @none", "remove stray-ended @none",
			"stop stray @none SIGTERM 10s",
			// The exited ones are waited for too: Wait releases their
			// networks before their end is reported.
			"wait ended @none", "wait failed @none", "wait runs @none",
		}
		if !slices.Equal(calls, want) {
			t.Errorf("executor calls = %q, want %q (no prepare, no start)", calls, want)
		}
		checkState(t, e, "runs", "unknown") // RUNNING already, as the manager knows
		checkState(t, e, "ended", "COMPLETE")
		checkState(t, e, "failed", "FAILED exit=2 task exited with code 2")
		if n := e.set.len(); n != 3 {
			t.Errorf("tasks = %d, want 3", n)
		}
		e.exec.exit(t, "runs", 0)
		synctest.Wait()
		checkState(t, e, "runs", "COMPLETE")
	})
}

func TestApplyRefusesInvalidChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		other := task("theirs", running, assigned)
		other.NodeId = "node-2"
		err := e.set.apply(&workerv1.Assignments{Type: incremental, Changes: []*workerv1.AssignmentChange{
			update(other), update(&objectv1.Task{}), {Task: task("t1", running, assigned)}, update(task("ok", running, assigned)),
		}})
		if err == nil {
			t.Error("apply with invalid changes = nil, want an error")
		}
		if err := e.set.apply(&workerv1.Assignments{}); err == nil {
			t.Error("apply of unspecified type = nil, want an error")
		}
		synctest.Wait()
		if n := e.set.len(); n != 1 {
			t.Errorf("tasks = %d, want 1 (only the valid change)", n)
		}
	})
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{in: "short", n: 10, want: "short"},
		{in: "exactly10!", n: 10, want: "exactly10!"},
		{in: "a longer error text", n: 10, want: "a longe..."},
		{in: "ééééé", n: 8, want: "éé..."}, // never cuts a rune in two
	}
	for _, tt := range tests {
		if got := truncate(tt.in, tt.n); got != tt.want || len(got) > tt.n {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

// TestLostProcessIsNotStartedAgain: after a node restart the executor holds
// a task's container but neither its process nor an exit status. The
// manager holds the task as RUNNING: it ran once, so it is reported failed
// (the orchestrator replaces it), never started a second time.
func TestLostProcessIsNotStartedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, func(f *fakeExec) {
			f.mu.Lock()
			f.tasks["rebooted"] = &fakeTask{done: make(chan struct{})} // held, never exited, not running
			f.tasks["fresh"] = &fakeTask{done: make(chan struct{})}
			f.mu.Unlock()
		})
		synctest.Wait()
		e.apply(t, complete,
			update(task("rebooted", running, running)),
			update(task("fresh", running, objectv1.TaskState_TASK_STATE_ASSIGNED)))
		calls := e.exec.takeCalls()
		started := func(id string) bool {
			return slices.ContainsFunc(calls, func(c string) bool { return strings.HasPrefix(c, "start "+id+" ") })
		}
		if started("rebooted") {
			t.Errorf("executor calls = %q: the task that ran before the restart was started again", calls)
		}
		if !started("fresh") {
			t.Errorf("executor calls = %q: the prepared task that never ran was not started", calls)
		}
		checkState(t, e, "rebooted", "FAILED the task's process is gone without an exit status: the node or its container runtime restarted")
	})
}
