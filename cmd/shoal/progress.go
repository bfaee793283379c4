package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// convergence follows a service after a create, update, scale or
// rollback, until its tasks run the spec asked for and its rolling update,
// if the change needs one, has completed. It is pure: the caller polls and
// passes the service, its tasks and the time.
type convergence struct {
	name string
	// changed is the service's spec_version after the change: an update
	// status for it (or a later one, a rollback's) is this change's.
	changed uint64
	// replicas is the desired count of a replicated service; global is true
	// for a global service, whose desired count is its number of tasks.
	replicas int
	global   bool
	// svc is the service as last observed: its spec is what tasks must
	// run (the previous one, once an update rolled back).
	svc *objectv1.Service
	// settle is how long tasks must stay unchanged before waiting stops on
	// tasks that cannot run yet.
	settle time.Duration

	// fingerprint identifies the tasks and update status last observed;
	// since is when it last changed.
	fingerprint string
	since       time.Time
	// rolledBack is why the update was rolled back, as first reported:
	// the status's message may change while the rollback goes on.
	rolledBack string
}

func newConvergence(svc *objectv1.Service, settle time.Duration) *convergence {
	cv := &convergence{changed: svc.GetSpecVersion(), settle: settle}
	cv.follow(svc)
	return cv
}

// follow takes the service's spec as it is now.
func (cv *convergence) follow(svc *objectv1.Service) {
	cv.svc = svc
	cv.name = svc.GetSpec().GetAnnotations().GetName()
	cv.replicas = int(svc.GetSpec().GetReplicated().GetReplicas())
	cv.global = svc.GetSpec().GetGlobal() != nil
}

// observe takes the service and its tasks desired RUNNING at time now, and
// returns the progress line and whether waiting is over; failure, when
// set, says why the change will not complete (the update paused or rolled
// back), which ends waiting too.
//
// Waiting is over when the desired tasks all run the service's spec and
// the change's rolling update, if any, has completed; or when every desired
// task is PENDING with a reason (e.g. no node can run it) and nothing has
// changed for the settle time, since such a reason does not go away by
// itself; or, for a global service, when it has had no task for the settle
// time (no node is eligible).
func (cv *convergence) observe(now time.Time, svc *objectv1.Service, tasks []*objectv1.Task) (line string, done bool, failure string) {
	if svc != nil {
		cv.follow(svc)
	}
	var current []*objectv1.Task
	outdated := 0
	for _, t := range tasks {
		switch {
		case t.GetDesiredState() != objectv1.TaskState_TASK_STATE_RUNNING:
		case cv.outdated(t):
			outdated++
		default:
			current = append(current, t)
		}
	}
	us := cv.updateStatus()
	// The tasks desired running are what progress is about; the others
	// (given to see repeated rejections) do not count as a change.
	var desired []*objectv1.Task
	for _, t := range tasks {
		if t.GetDesiredState() == objectv1.TaskState_TASK_STATE_RUNNING {
			desired = append(desired, t)
		}
	}
	if fp := fingerprint(desired, us); fp != cv.fingerprint || cv.since.IsZero() {
		cv.fingerprint, cv.since = fp, now
	}
	settled := now.Sub(cv.since) >= cv.settle

	want := cv.replicas
	if cv.global {
		want = len(current)
	}
	counts := map[objectv1.TaskState]int{}
	for _, t := range current {
		counts[t.GetStatus().GetState()]++
	}
	running := counts[objectv1.TaskState_TASK_STATE_RUNNING]

	// updated: the change's rolling update completed, or it needs none (no
	// status for it, and no task to replace). A rollback is waited for
	// until its tasks run too, then reported as the failure it is.
	updated := us == nil && outdated == 0
	phase, rolledBack := "", ""
	// A rollback the user asked for (service rollback) carries the
	// version the change made: it is the change, not its failure. An
	// automatic one rolls the old spec out under a later version.
	requested := us.GetSpecVersion() == cv.changed
	switch st := us.GetState(); {
	case requested && st == objectv1.UpdateState_UPDATE_STATE_ROLLBACK_STARTED:
		phase = "rolling back"
	case requested && st == objectv1.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED:
		phase, updated = "rolled back", true
	}
	switch us.GetState() {
	case objectv1.UpdateState_UPDATE_STATE_UPDATING:
		phase = "updating"
	case objectv1.UpdateState_UPDATE_STATE_COMPLETED:
		phase, updated = "update completed", true
	case objectv1.UpdateState_UPDATE_STATE_ROLLBACK_STARTED:
		phase = "rolling back"
		if requested {
			break
		}
		if cv.rolledBack == "" {
			cv.rolledBack = us.GetMessage()
		}
	case objectv1.UpdateState_UPDATE_STATE_PAUSED, objectv1.UpdateState_UPDATE_STATE_ROLLBACK_PAUSED:
		return cv.countLine(want, counts, outdated, ""), true, cmp.Or(us.GetMessage(), updateStateName(us.GetState()))
	case objectv1.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED:
		if requested {
			phase = "rolled back"
			break
		}
		// The reason is the one given when the rollback started, if it
		// was seen: a server may have replaced it since.
		phase, updated = "rolling back", true
		rolledBack = cmp.Or(cv.rolledBack, us.GetMessage())
		switch {
		case rolledBack == "" || rolledBack == "rollback completed":
			rolledBack = "update rolled back"
		case !strings.HasPrefix(rolledBack, "update rolled back"):
			rolledBack = "update rolled back: " + rolledBack
		}
	}

	if running == 0 {
		if reason, n := repeatedRejection(tasks, cv); n >= rejectionsToStop {
			return cv.countLine(want, counts, outdated, phase), true, fmt.Sprintf("its tasks were rejected %d times: %s", n, reason)
		}
	}

	switch {
	case updated && len(current) == want && running == want && outdated == 0 && (want > 0 || !cv.global):
		if rolledBack != "" {
			phase = "rolled back"
		}
		return cv.countLine(want, counts, outdated, phase), true, rolledBack
	case cv.global && len(current) == 0 && outdated == 0 && settled:
		return cv.name + ": no node is eligible for this global service yet", true, rolledBack
	case settled && outdated == 0 && len(current) == want && want > 0 && allPendingWithReason(current):
		noun := "tasks"
		if want == 1 {
			noun = "task"
		}
		return fmt.Sprintf("%s: %d %s pending: %s", cv.name, want, noun, current[0].GetStatus().GetMessage()), true, rolledBack
	}
	return cv.countLine(want, counts, outdated, phase), false, ""
}

// rejectionsToStop is how many of the change's tasks rejected by their
// node for one reason (and none running) end the wait: a node refuses a task
// it cannot prepare (a bind mount's source missing, an image that cannot be
// pulled), and the orchestrator's replacements are refused the same way
// every time, so the wait would never see the service settle.
const rejectionsToStop = 3

// repeatedRejection returns the most common error of the change's tasks
// that ended REJECTED, and how many share it.
func repeatedRejection(tasks []*objectv1.Task, cv *convergence) (string, int) {
	byErr := map[string]int{}
	best, bestN := "", 0
	for _, t := range tasks {
		if t.GetStatus().GetState() != objectv1.TaskState_TASK_STATE_REJECTED || cv.outdated(t) || t.GetSpecVersion() < cv.changed {
			continue
		}
		e := cmp.Or(t.GetStatus().GetErr(), t.GetStatus().GetMessage(), "rejected")
		byErr[e]++
		if byErr[e] > bestN || byErr[e] == bestN && e < best {
			best, bestN = e, byErr[e]
		}
	}
	return best, bestN
}

// updateStatus is the service's update status if it is the change's (or a
// later rollback's), else nil: an older one is of an update the change
// replaced.
func (cv *convergence) updateStatus() *objectv1.UpdateStatus {
	us := cv.svc.GetUpdateStatus()
	if us == nil || us.GetSpecVersion() < cv.changed || us.GetState() == objectv1.UpdateState_UPDATE_STATE_UNSPECIFIED {
		return nil
	}
	return us
}

// outdated reports whether t is still to be replaced by a rolling update,
// as the orchestrator decides: it comes from another spec version and what
// it runs differs from the service's. Both must hold, since a change of
// replicas bumps the spec version without making any task out of date.
func (cv *convergence) outdated(t *objectv1.Task) bool {
	spec := cv.svc.GetSpec()
	return t.GetSpecVersion() != cv.svc.GetSpecVersion() &&
		(!proto.Equal(t.GetSpec(), spec.GetTask()) ||
			!proto.Equal(t.GetServiceAnnotations(), spec.GetAnnotations()) ||
			!proto.Equal(t.GetEndpoint(), spec.GetEndpoint()))
}

// quietLimit is how long waiting without --timeout goes on while nothing
// changes, neither the tasks nor the update: an update legitimately rests
// for a batch's monitor period and delay, and an old task may take its stop
// grace period to stop; beyond those and timeout, the rollout is stuck
// (a node that does not answer, say) and the command should say so.
func (cv *convergence) quietLimit(timeout time.Duration) time.Duration {
	spec := cv.svc.GetSpec()
	return timeout + spec.GetUpdate().GetMonitor().AsDuration() + spec.GetUpdate().GetDelay().AsDuration() +
		spec.GetTask().GetContainer().GetStopGracePeriod().AsDuration()
}

func updateStateName(s objectv1.UpdateState) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(s.String(), "UPDATE_STATE_"), "_", " "))
}

// countLine is "web: 2/3 running, 1 pending", with every state that has
// tasks, in lifecycle order, after the update's phase if there is one
// ("web: updating, 2/3 running, 1 to update").
func (cv *convergence) countLine(want int, counts map[objectv1.TaskState]int, outdated int, phase string) string {
	var b strings.Builder
	b.WriteString(cv.name + ": ")
	if phase != "" {
		b.WriteString(phase + ", ")
	}
	fmt.Fprintf(&b, "%d/%d running", counts[objectv1.TaskState_TASK_STATE_RUNNING], want)
	states := make([]objectv1.TaskState, 0, len(counts))
	for s := range counts {
		if s != objectv1.TaskState_TASK_STATE_RUNNING {
			states = append(states, s)
		}
	}
	slices.Sort(states)
	for _, s := range states {
		fmt.Fprintf(&b, ", %d %s", counts[s], taskStateName(s))
	}
	if outdated > 0 {
		fmt.Fprintf(&b, ", %d to update", outdated)
	}
	return b.String()
}

func allPendingWithReason(tasks []*objectv1.Task) bool {
	for _, t := range tasks {
		if t.GetStatus().GetState() != objectv1.TaskState_TASK_STATE_PENDING || t.GetStatus().GetMessage() == "" {
			return false
		}
	}
	return true
}

// fingerprint identifies what progress cares about in a set of tasks and
// an update status, so that any change restarts the settle time.
func fingerprint(tasks []*objectv1.Task, us *objectv1.UpdateStatus) string {
	parts := make([]string, len(tasks))
	for i, t := range tasks {
		parts[i] = fmt.Sprintf("%s|%d|%d|%d|%s", t.GetId(), t.GetSpecVersion(), t.GetDesiredState(),
			t.GetStatus().GetState(), t.GetStatus().GetMessage())
	}
	slices.Sort(parts)
	parts = append(parts, fmt.Sprintf("update|%d|%d|%d|%s", us.GetSpecVersion(), us.GetState(), us.GetUpdated(), us.GetMessage()))
	return strings.Join(parts, "\n")
}

// progressPrinter prints progress lines: on a terminal it rewrites one line,
// elsewhere it prints a line per change.
type progressPrinter struct {
	w    io.Writer
	tty  bool
	last string
}

func (p *progressPrinter) show(line string) {
	if line == p.last {
		return
	}
	p.last = line
	if p.tty {
		fmt.Fprintf(p.w, "\r\x1b[2K%s", line)
		return
	}
	fmt.Fprintln(p.w, line)
}

// end finishes a rewritten line.
func (p *progressPrinter) end() {
	if p.tty && p.last != "" {
		fmt.Fprintln(p.w)
	}
}

// progress returns where waiting prints its progress: stdout, unless the
// output is data (--format json or a template), which progress would spoil.
func (c *cli) progress(format *outputFormat) *progressPrinter {
	if format.structured() {
		return &progressPrinter{w: c.errOut, tty: c.errTTY}
	}
	return &progressPrinter{w: c.out, tty: c.tty}
}

// waitConverged polls svc and its tasks, after a change to it, printing
// progress until the change has converged (see convergence.observe), or
// will not (its update paused or rolled back: an error saying why), or ctx
// ends. Without a deadline on ctx (no --timeout given), it also ends when
// nothing changes for longer than the rollout can rest (quietLimit).
func (c *cli) waitConverged(ctx context.Context, client controlv1.ControlClient, svc *objectv1.Service, pp *progressPrinter) error {
	if isJob(svc.GetSpec()) {
		// A job converges by ending; it is not waited for (job_flags.go).
		return nil
	}
	cv := newConvergence(svc, c.settle)
	defer pp.end()
	_, bounded := ctx.Deadline()
	tick := time.NewTicker(c.poll)
	defer tick.Stop()
	for {
		// The tasks first, then the service: the orchestrator writes an
		// update's status with the first tasks it replaces, so a status
		// read after the tasks is at least as new as they are, and tasks
		// that all run the spec with no status for it were never out of
		// date (a scale), not replaced before the status was read.
		// Every task of the service, the ended ones too: repeated
		// rejections end the wait (observe).
		tasks, err := client.ListTasks(ctx, &controlv1.ListTasksRequest{ServiceIds: []string{svc.GetId()}})
		var got *controlv1.GetServiceResponse
		if err == nil {
			got, err = client.GetService(ctx, &controlv1.GetServiceRequest{Ref: svc.GetId()})
		}
		if err != nil {
			// Unbounded, a call that timed out says so itself ("no answer
			// from ... within --timeout").
			if ctx.Err() != nil || bounded && errors.Is(err, context.DeadlineExceeded) {
				return c.waitEnded(ctx, err, cv.name, pp.last)
			}
			return err
		}
		now := c.now()
		line, done, failure := cv.observe(now, got.GetService(), tasks.GetTasks())
		pp.show(line)
		if failure != "" {
			pp.end()
			pp.last = ""
			return fmt.Errorf("service %s: %s; see 'shoal service ps %s'", cv.name, nameTasks(ctx, client, failure), cv.name)
		}
		if done {
			return nil
		}
		if quiet := cv.quietLimit(cmp.Or(c.quiet, c.timeout)); !bounded && now.Sub(cv.since) >= quiet {
			pp.end()
			pp.last = ""
			return fmt.Errorf("%s: nothing changed for %s (%s); it goes on in the background, see 'shoal service ps %s'",
				cv.name, quiet, strings.TrimPrefix(line, cv.name+": "), cv.name)
		}
		select {
		case <-ctx.Done():
			return c.waitEnded(ctx, ctx.Err(), cv.name, pp.last)
		case <-tick.C:
		}
	}
}

// taskRef is a task ID in an update status's message.
var taskRef = regexp.MustCompile(`\btask ([0-9a-z]{25})\b`)

// nameTasks writes the tasks an update status's message names by ID with
// their names, as service ps and logs show them ("task web.2.4fq2bd7ldx8k
// failed: exit code 1"), for people to see which replica failed. A task it
// cannot read keeps its ID.
func nameTasks(ctx context.Context, client controlv1.ControlClient, msg string) string {
	return taskRef.ReplaceAllStringFunc(msg, func(m string) string {
		id := strings.TrimPrefix(m, "task ")
		resp, err := client.GetTask(ctx, &controlv1.GetTaskRequest{Ref: id})
		if err != nil {
			return m
		}
		return "task " + taskTable{}.taskName(resp.GetTask()) + "." + shortID(id, false)
	})
}

// waitEnded explains why waiting stopped early. The change itself is
// stored: the service keeps converging without the CLI.
func (c *cli) waitEnded(ctx context.Context, cause error, name, last string) error {
	state := ""
	if last != "" {
		state = " (" + strings.TrimPrefix(last, name+": ") + ")"
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(cause, context.DeadlineExceeded) {
		return fmt.Errorf("%s: not converged within --timeout %s%s; it goes on in the background, see 'shoal service ps %s'",
			name, c.timeout, state, name)
	}
	return fmt.Errorf("%s: stopped waiting%s; it goes on in the background, see 'shoal service ps %s'", name, state, name)
}
