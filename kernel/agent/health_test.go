package agent

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

const (
	healthStarting  = objectv1.TaskHealth_TASK_HEALTH_STARTING
	healthHealthy   = objectv1.TaskHealth_TASK_HEALTH_HEALTHY
	healthUnhealthy = objectv1.TaskHealth_TASK_HEALTH_UNHEALTHY
)

// healthExec is fakeExec whose tasks have a health check: Inspect says
// what the test set with setHealth.
type healthExec struct {
	*fakeExec
	hmu     sync.Mutex
	health  map[string]objectv1.TaskHealth
	out     map[string]string
	inspect int
}

func (h *healthExec) Inspect(ctx context.Context, id string) (executor.TaskInfo, error) {
	ti, err := h.fakeExec.Inspect(ctx, id)
	h.hmu.Lock()
	defer h.hmu.Unlock()
	h.inspect++
	if err == nil && ti.Running {
		ti.Health, ti.HealthOutput = h.health[id], h.out[id]
	}
	return ti, err
}

func (h *healthExec) setHealth(id string, hl objectv1.TaskHealth, out string) {
	h.hmu.Lock()
	defer h.hmu.Unlock()
	h.health[id], h.out[id] = hl, out
}

func newHealthEnv(t *testing.T) (*env, *healthExec) {
	rep := newReporter(100, 100*time.Millisecond)
	hx := &healthExec{fakeExec: newFakeExec(rep), health: map[string]objectv1.TaskHealth{}, out: map[string]string{}}
	set := newTaskSet("node-1", hx, rep, slog.New(slog.DiscardHandler))
	set.adopt(nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { set.run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &env{set: set, exec: hx.fakeExec, rep: rep}, hx
}

func reportedHealth(e *env, id string) objectv1.TaskHealth {
	return known(e.rep, id).GetHealth()
}

// TestHealthIsReported: a task with a health check is RUNNING (starting)
// from its start, and each verdict of the check reaches its status, stamped
// when it changed.
func TestHealthIsReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, hx := newHealthEnv(t)
		hx.setHealth("t1", healthStarting, "")
		e.apply(t, complete, update(task("t1", running, assigned)))
		checkState(t, e, "t1", "RUNNING")
		if got := reportedHealth(e, "t1"); got != healthStarting {
			t.Fatalf("health at start = %v, want %v", got, healthStarting)
		}
		hx.setHealth("t1", healthHealthy, "ok")
		time.Sleep(healthPoll)
		synctest.Wait()
		st := known(e.rep, "t1")
		if st.GetHealth() != healthHealthy || st.GetState() != running || st.GetMessage() != "healthy" {
			t.Fatalf("status after the check passed = %v, want RUNNING and healthy", st)
		}
		if !st.GetTimestamp().AsTime().Equal(time.Now()) {
			t.Errorf("status stamped %v, want now %v: a rolling update watches the task from when it is healthy", st.GetTimestamp().AsTime(), time.Now())
		}
		// A restarted executor starts the check over: the task stays healthy.
		hx.setHealth("t1", healthStarting, "")
		time.Sleep(3 * healthPoll)
		synctest.Wait()
		if got := reportedHealth(e, "t1"); got != healthHealthy {
			t.Errorf("health after the executor's check started over = %v, want still %v", got, healthHealthy)
		}
		// The task still runs, and ends as any.
		e.exec.exit(t, "t1", 0)
		synctest.Wait()
		checkState(t, e, "t1", "COMPLETE")
	})
}

// TestUnhealthyTaskIsStoppedAndFails: at UNHEALTHY, the task is stopped
// with its stop signal and grace period and reported FAILED with the
// check's output.
func TestUnhealthyTaskIsStoppedAndFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, hx := newHealthEnv(t)
		hx.setHealth("t1", healthHealthy, "")
		e.apply(t, complete, update(task("t1", running, assigned)))
		e.exec.takeCalls()
		hx.setHealth("t1", healthUnhealthy, "health check failed 3 times in a row: exit code 1: not ready")
		time.Sleep(healthPoll)
		synctest.Wait()
		checkCalls(t, e, "stop t1 @RUNNING SIGTERM 3s", "wait t1 @RUNNING")
		checkState(t, e, "t1", "FAILED exit=143 unhealthy container: health check failed 3 times in a row: exit code 1: not ready")
		if got := reportedHealth(e, "t1"); got != healthUnhealthy {
			t.Errorf("health of the failed task = %v, want %v", got, healthUnhealthy)
		}
		// Ended: never started again.
		e.apply(t, incremental, update(task("t1", running, running)))
		checkCalls(t, e)
	})
}

func TestHealthMessage(t *testing.T) {
	if got := healthMessage(healthUnhealthy, "health check failed 3 of 3 times in a row: exit code 1: no"); got != "health check failed 3 of 3 times in a row: exit code 1: no" {
		t.Errorf("unhealthy message = %q, want the check's output (a paused update names it)", got)
	}
	if got := healthMessage(healthStarting, ""); got != "started, health: starting" {
		t.Errorf("starting message = %q", got)
	}
}

// TestNoHealthCheckNoPolling: a task without a health check is not polled:
// its worker only waits.
func TestNoHealthCheckNoPolling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, hx := newHealthEnv(t)
		e.apply(t, complete, update(task("t1", running, assigned)))
		hx.hmu.Lock()
		before := hx.inspect
		hx.hmu.Unlock()
		time.Sleep(time.Minute)
		synctest.Wait()
		hx.hmu.Lock()
		after := hx.inspect
		hx.hmu.Unlock()
		if after != before {
			t.Errorf("Inspect called %d times in a minute for a task without a health check, want 0", after-before)
		}
		if st := known(e.rep, "t1"); st.GetHealth() != objectv1.TaskHealth_TASK_HEALTH_UNSPECIFIED || strings.Contains(e.state("t1"), "unhealthy") {
			t.Errorf("status = %v, want no health", st)
		}
	})
}

// TestShutdownWhileStarting: a task told to stop while its check has not
// passed yet is shut down, not failed.
func TestShutdownWhileStarting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, hx := newHealthEnv(t)
		hx.setHealth("t1", healthStarting, "")
		e.apply(t, complete, update(task("t1", running, assigned)))
		e.apply(t, incremental, update(task("t1", shutdown, running)))
		checkState(t, e, "t1", "SHUTDOWN exit=143")
	})
}

// TestAdoptedTaskHealthIsWatched: a task the agent adopts after a restart
// (running in the executor, RUNNING and healthy at the manager) is watched
// again, and failed once unhealthy.
func TestAdoptedTaskHealthIsWatched(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rep := newReporter(100, 100*time.Millisecond)
		hx := &healthExec{fakeExec: newFakeExec(rep), health: map[string]objectv1.TaskHealth{}, out: map[string]string{}}
		hx.hold("t1", true, 0)
		hx.setHealth("t1", healthHealthy, "")
		set := newTaskSet("node-1", hx, rep, slog.New(slog.DiscardHandler))
		list, _ := hx.List(t.Context())
		set.adopt(list)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { set.run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		e := &env{set: set, exec: hx.fakeExec, rep: rep}
		tk := task("t1", running, running)
		tk.Status.Health = healthHealthy
		e.apply(t, complete, update(tk))
		hx.setHealth("t1", healthUnhealthy, "no answer")
		time.Sleep(healthPoll)
		synctest.Wait()
		checkState(t, e, "t1", "FAILED exit=143 unhealthy container: no answer")
	})
}
