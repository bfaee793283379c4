package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// convergence follows the tasks of one service after a create, update or
// scale, until they run. It is pure: the caller polls and passes the time.
type convergence struct {
	name string
	// replicas is the desired count of a replicated service; global is true
	// for a global service, whose desired count is its number of tasks.
	replicas int
	global   bool
	// specVersion and taskSpec are the service's after the change; see
	// outdated.
	specVersion uint64
	taskSpec    *objectv1.TaskSpec
	// settle is how long tasks must stay unchanged before waiting stops on
	// tasks that cannot run yet.
	settle time.Duration

	fingerprint string
	since       time.Time
}

func newConvergence(svc *objectv1.Service, settle time.Duration) *convergence {
	return &convergence{
		name:        svc.GetSpec().GetAnnotations().GetName(),
		replicas:    int(svc.GetSpec().GetReplicated().GetReplicas()),
		global:      svc.GetSpec().GetGlobal() != nil,
		specVersion: svc.GetSpecVersion(),
		taskSpec:    svc.GetSpec().GetTask(),
		settle:      settle,
	}
}

// observe takes the service's tasks desired RUNNING at time now, and returns
// the progress line and whether waiting is over. It is over when the desired
// tasks all run; or when every desired task is PENDING with a reason (e.g.
// no node can run it) and nothing has changed for the settle time, since
// such a reason does not go away by itself; or, for a global service, when
// it has had no task for the settle time (no node is eligible).
func (cv *convergence) observe(now time.Time, tasks []*objectv1.Task) (line string, done bool) {
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
	if fp := fingerprint(tasks); fp != cv.fingerprint || cv.since.IsZero() {
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

	switch {
	case len(current) == want && running == want && outdated == 0 && (want > 0 || !cv.global):
		return cv.countLine(want, counts, outdated), true
	case cv.global && len(current) == 0 && outdated == 0 && settled:
		return cv.name + ": no node is eligible for this global service yet", true
	case settled && outdated == 0 && len(current) == want && want > 0 && allPendingWithReason(current):
		noun := "tasks"
		if want == 1 {
			noun = "task"
		}
		return fmt.Sprintf("%s: %d %s pending: %s", cv.name, want, noun, current[0].GetStatus().GetMessage()), true
	}
	return cv.countLine(want, counts, outdated), false
}

// outdated reports whether t is still to be replaced by a rolling update:
// it comes from an older spec version and its task spec differs from the
// service's. Both must hold, since a change of replicas bumps the spec
// version without making any task out of date.
func (cv *convergence) outdated(t *objectv1.Task) bool {
	return t.GetSpecVersion() < cv.specVersion && !proto.Equal(t.GetSpec(), cv.taskSpec)
}

// countLine is "web: 2/3 running, 1 pending", with every state that has
// tasks, in lifecycle order.
func (cv *convergence) countLine(want int, counts map[objectv1.TaskState]int, outdated int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d/%d running", cv.name, counts[objectv1.TaskState_TASK_STATE_RUNNING], want)
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

// fingerprint identifies what progress cares about in a set of tasks, so
// that any change restarts the settle time.
func fingerprint(tasks []*objectv1.Task) string {
	parts := make([]string, len(tasks))
	for i, t := range tasks {
		parts[i] = fmt.Sprintf("%s|%d|%d|%d|%s", t.GetId(), t.GetSpecVersion(), t.GetDesiredState(),
			t.GetStatus().GetState(), t.GetStatus().GetMessage())
	}
	slices.Sort(parts)
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

// waitConverged polls the tasks of svc, after a change to it, printing
// progress until the tasks have converged (see convergence.observe) or ctx,
// bounded by --timeout, ends.
func (c *cli) waitConverged(ctx context.Context, client controlv1.ControlClient, svc *objectv1.Service) error {
	cv := newConvergence(svc, c.settle)
	pp := &progressPrinter{w: c.out, tty: c.tty}
	defer pp.end()
	tick := time.NewTicker(c.poll)
	defer tick.Stop()
	for {
		resp, err := client.ListTasks(ctx, &controlv1.ListTasksRequest{
			ServiceIds:    []string{svc.GetId()},
			DesiredStates: []objectv1.TaskState{objectv1.TaskState_TASK_STATE_RUNNING},
		})
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
				return c.waitEnded(ctx, err, cv.name, pp.last)
			}
			return err
		}
		line, done := cv.observe(c.now(), resp.GetTasks())
		pp.show(line)
		if done {
			return nil
		}
		if err := updateStopped(ctx, client, svc); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return c.waitEnded(ctx, ctx.Err(), cv.name, pp.last)
		case <-tick.C:
		}
	}
}

// updateStopped returns an error when the rolling update of svc's spec
// stopped short of converging: it paused, or failed and rolled back. The
// tasks would never converge to the spec the user asked for, so waiting on
// would only run into --timeout.
func updateStopped(ctx context.Context, client controlv1.ControlClient, svc *objectv1.Service) error {
	if svc.GetSpecVersion() == 0 {
		return nil
	}
	resp, err := client.GetService(ctx, &controlv1.GetServiceRequest{Ref: svc.GetId()})
	if err != nil {
		return nil // the task listing reports lasting errors
	}
	us := resp.GetService().GetUpdateStatus()
	if us.GetSpecVersion() < svc.GetSpecVersion() {
		return nil
	}
	switch us.GetState() {
	case objectv1.UpdateState_UPDATE_STATE_PAUSED, objectv1.UpdateState_UPDATE_STATE_ROLLBACK_PAUSED,
		objectv1.UpdateState_UPDATE_STATE_ROLLBACK_STARTED, objectv1.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED:
		name := svc.GetSpec().GetAnnotations().GetName()
		return fmt.Errorf("%s: %s (%s); see 'shoal service ps %s'", name,
			strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(us.GetState().String(), "UPDATE_STATE_"), "_", " ")), us.GetMessage(), name)
	}
	return nil
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
