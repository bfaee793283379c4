package agent

import (
	"context"
	"errors"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// Health checks run on the node, in the executor plugin: it holds the
// container to run the check in (containerd's exec) and the image's config,
// whose HEALTHCHECK applies when the spec has none, and it keeps checking
// when the agent restarts. The agent learns the result through Inspect
// (TaskInfo.Health), records it in the task's RUNNING status (so the
// managers' rolling updates, and the node's DNS and VIP backends, follow
// it), and acts on it: an UNHEALTHY task is stopped and reported FAILED
// with the check's last output, and its restart policy replaces it, as
// swarm fails an unhealthy container's task.
//
// Why polling Inspect, not a stream: it needs no new call in the executor
// contract (one field in TaskInfo), a restarted plugin picks up where it
// was (the agent keeps asking), and a task without a check costs nothing
// (it is not polled). A check changes its verdict at most once per
// interval (30s by default); healthPoll bounds how late the node hears it.

const healthPoll = time.Second

// errUnhealthy ends waitWatchingHealth when the task's check said
// UNHEALTHY; w.unhealthy holds the check's output.
var errUnhealthy = errors.New("unhealthy container")

// waitWatchingHealth waits for the task's process to exit, as Wait; for a
// task with a health check it meanwhile polls the executor for the check's
// verdict, reports every change, and returns errUnhealthy at UNHEALTHY.
func (w *taskWorker) waitWatchingHealth(ctx context.Context) (executor.ExitStatus, error) {
	exec := w.set.exec
	if w.health == objectv1.TaskHealth_TASK_HEALTH_UNSPECIFIED {
		return exec.Wait(ctx, w.id)
	}
	type result struct {
		es  executor.ExitStatus
		err error
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan result, 1)
	go func() {
		es, err := exec.Wait(wctx, w.id)
		done <- result{es, err}
	}()
	tick := time.NewTicker(healthPoll)
	defer tick.Stop()
	for {
		select {
		case r := <-done:
			return r.es, r.err
		case <-tick.C:
		}
		et, err := exec.Inspect(ctx, w.id)
		if err != nil || !et.Running {
			continue // Wait says how it ended; a transient error is asked again
		}
		if et.Health == objectv1.TaskHealth_TASK_HEALTH_STARTING && w.health == objectv1.TaskHealth_TASK_HEALTH_HEALTHY {
			// A restarted executor starts its checks over; as in docker, a
			// task never goes back to starting: it stays healthy (and a
			// DNS or VIP backend) until a verdict says otherwise.
			continue
		}
		if et.Health == objectv1.TaskHealth_TASK_HEALTH_UNHEALTHY {
			w.unhealthy = et.HealthOutput
			if w.unhealthy == "" {
				w.unhealthy = "health check failed"
			}
		}
		w.setHealth(et.Health)
		if et.Health == objectv1.TaskHealth_TASK_HEALTH_UNHEALTHY {
			cancel()
			<-done
			return executor.ExitStatus{}, errUnhealthy
		}
	}
}

// setHealth reports the task's RUNNING status again with a new health,
// stamped now: a rolling update watches a new task from when it is healthy.
// Its message says the health, with the check's output once unhealthy
// (what a paused update names as the cause).
func (w *taskWorker) setHealth(h objectv1.TaskHealth) {
	if h == w.health {
		return
	}
	w.health = h
	if w.status.GetState() != stateRunning {
		return
	}
	st := proto.Clone(w.status).(*objectv1.TaskStatus)
	st.Health = h
	st.Timestamp = timestamppb.Now()
	st.Message = healthMessage(h, w.unhealthy)
	w.status = st
	w.set.rep.report(w.id, st)
	w.set.log.Debug("task health", "task_id", w.id, "health", h.String())
}

func healthMessage(h objectv1.TaskHealth, output string) string {
	switch h {
	case objectv1.TaskHealth_TASK_HEALTH_STARTING:
		return "started, health: starting"
	case objectv1.TaskHealth_TASK_HEALTH_HEALTHY:
		return "healthy"
	case objectv1.TaskHealth_TASK_HEALTH_UNHEALTHY:
		return truncate(output, maxErrText)
	}
	return "started"
}

// failUnhealthy stops a task whose health check said UNHEALTHY, and
// reports it FAILED with the check's output and the exit code the stop
// gave it (137 when it had to be killed).
func (w *taskWorker) failUnhealthy(ctx, ictx context.Context, t *objectv1.Task) stepResult {
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
	w.advanceExit(stateFailed, "unhealthy", "unhealthy container: "+w.unhealthy, es.ExitCode)
	return stepIdle
}
