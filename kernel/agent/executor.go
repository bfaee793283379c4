package agent

import (
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// The agent runs tasks on an sdk/executor.Executor: kernel/simexec in
// memory, or the executor plugin over gRPC (sdk/executor.Client). This file
// holds what the agent derives from a task spec for it, and how Prepare's
// progress reaches the task's status.

const (
	// defaultStopSignal is sent first on stop when the spec does not say
	// (ContainerSpec.stop_signal), as docker and containerd do.
	defaultStopSignal = "SIGTERM"
	// defaultStopGrace is how long a task has to stop before it is killed
	// when its spec does not say (ContainerSpec.stop_grace_period).
	defaultStopGrace = 10 * time.Second
	// progressInterval bounds how often Prepare's progress reaches the
	// task's status. Every report that changes a status is a Raft write
	// on the managers: an image pull calls progress many times a second,
	// and a node pulling for a hundred tasks must not turn that into a
	// hundred writes per second. One per second still reads as live in
	// `service ps`.
	progressInterval = time.Second
	// maxProgressText bounds a progress message in a status; the executor
	// writes short lines, and a long one is cut rather than refused.
	maxProgressText = 256
)

// stopSignal is the signal that asks the task's process to stop. A signal
// the executor could not send (the control API refuses them; a task from
// an older manager might carry one) falls back to the default: a task
// that cannot be asked to stop would be retried forever.
func stopSignal(t *objectv1.Task) string {
	s := t.GetSpec().GetContainer().GetStopSignal()
	if _, err := executor.ParseSignal(s); s == "" || err != nil {
		return defaultStopSignal
	}
	return s
}

// stopGrace is how long the task has to stop before it is killed.
func stopGrace(t *objectv1.Task) time.Duration {
	g := t.GetSpec().GetContainer().GetStopGracePeriod()
	if g == nil || g.AsDuration() < 0 {
		return defaultStopGrace
	}
	return g.AsDuration()
}

// progress carries the messages of one Prepare call into PREPARING
// statuses, at most one per progressInterval: the first message goes at
// once, later ones wait for the interval, and only the latest waiting one
// is sent (a trailing timer sends it, so the last word of a pull is seen).
// The executor may call it from any goroutine; close ends it, after which
// it reports nothing, so a late call never reports PREPARING after the
// worker moved on.
type progress struct {
	taskID   string
	rep      *reporter
	template *objectv1.TaskStatus // the PREPARING status the worker reported

	mu      sync.Mutex
	closed  bool
	last    time.Time // when a message was last reported
	pending string    // the latest message not reported yet
	timer   *time.Timer
}

func newProgress(taskID string, rep *reporter, preparing *objectv1.TaskStatus) *progress {
	return &progress{taskID: taskID, rep: rep, template: preparing}
}

// update takes one progress message.
func (p *progress) update(msg string) {
	msg = truncate(strings.ToValidUTF8(strings.TrimSpace(msg), "\uFFFD"), maxProgressText)
	if msg == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.pending = msg
	if wait := progressInterval - time.Since(p.last); wait > 0 {
		if p.timer == nil {
			p.timer = time.AfterFunc(wait, p.flush)
		}
		return
	}
	p.sendLocked()
}

// flush reports the waiting message, if any.
func (p *progress) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timer = nil
	if !p.closed && p.pending != "" {
		p.sendLocked()
	}
}

func (p *progress) sendLocked() {
	st := &objectv1.TaskStatus{
		Timestamp:   timestamppb.Now(),
		State:       p.template.GetState(),
		Message:     p.pending,
		ContainerId: p.template.GetContainerId(),
	}
	p.pending, p.last = "", time.Now()
	p.rep.report(p.taskID, st)
}

// close stops reporting; messages still waiting are dropped, as the
// worker's next status supersedes them.
func (p *progress) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
}
