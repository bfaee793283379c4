package orchestrator

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// A rolling update replaces the placed tasks whose spec is out of date in
// batches, as the service's update config says (its rollback config, for
// a rollback: see pacing), the way Docker swarm mode does:
//
//   - A batch is at most parallelism slots (nodes, for global services; 0:
//     all of them). Stop-first (the default), a slot's old task is told to
//     stop in the write that creates its replacement, which is held
//     (desired READY) until the old task has stopped (hold.go); start-first,
//     the replacement is created beside the old task, which is told to stop
//     once the replacement is RUNNING.
//   - Once every new task of the batch is up (RUNNING, and healthy when it
//     has a health check: its status says TaskHealth STARTING until its
//     first check passes), the batch is watched for monitor from then (the
//     agent stamps the status when the health changes); the next batch
//     starts delay after that.
//   - A new task of the batch that fails (FAILED, REJECTED, or RUNNING but
//     UNHEALTHY, which its node is about to stop and fail) before the next
//     batch starts is an update failure. Once the failures exceed
//     max_failure_ratio of the tasks replaced so far (0: any failure), the
//     failure action applies: PAUSE (the default) replaces no more tasks
//     until the service is updated again; CONTINUE carries on; ROLLBACK
//     writes the service back to previous_spec, which is then rolled out the
//     same way (a failing rollback pauses).
//
// Every fact this needs lives in Raft: the service's update_status (state,
// tasks replaced, failures of finished batches, when the current batch
// started) and the tasks themselves (which of the batch run, since when,
// which failed). A new leader carries on where the last one was, and a
// paused update stays paused. The monitor and delay deadlines are
// passStats.wakes, computed again by every pass.

// staleSlot is a slot of a replicated service (a node of a global one)
// whose task runs an out-of-date spec.
type staleSlot struct {
	// old is the out-of-date task: placed, not ended, desired running.
	old *objectv1.Task
	// repl is its start-first replacement, when one is under way.
	repl *objectv1.Task
}

// plan is what a rolling update decided in one pass, for the caller to
// carry out on the slots.
type plan struct {
	// stopped are old tasks retired stop-first: their slots get a new task.
	stopped []*objectv1.Task
	// started are old tasks that stay while their slot gets a new task
	// beside them (start-first).
	started []*objectv1.Task
	// respec is set when the update wrote the service back to its previous
	// spec: the rest of the pass must not create tasks from the spec it read.
	respec bool
}

const (
	updating          = objectv1.UpdateState_UPDATE_STATE_UPDATING
	updatePaused      = objectv1.UpdateState_UPDATE_STATE_PAUSED
	updateCompleted   = objectv1.UpdateState_UPDATE_STATE_COMPLETED
	rollbackStarted   = objectv1.UpdateState_UPDATE_STATE_ROLLBACK_STARTED
	rollbackCompleted = objectv1.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED
	rollbackPaused    = objectv1.UpdateState_UPDATE_STATE_ROLLBACK_PAUSED
)

// rollingUpdate moves a service's rolling update on by what the state says
// now. stale are the slots with an out-of-date task; tasks are all the
// service's tasks as the pass read them, history included.
func rollingUpdate(tx *state.Tx, svc *objectv1.Service, stale []staleSlot, tasks []*objectv1.Task, now time.Time, stats *passStats) (plan, error) {
	var p plan
	waiting, err := letReplacedGo(tx, stale, stats)
	if err != nil {
		return p, err
	}
	st := updateStatus(svc, len(waiting) > 0, now)
	if st == nil {
		return p, nil
	}
	if st.GetState() == updatePaused || st.GetState() == rollbackPaused {
		return p, setUpdateStatus(tx, svc, st, stats)
	}

	cfg := pacing(svc.GetSpec(), st)
	monitor := cfg.GetMonitor().AsDuration()
	b := watchBatch(svc, st, tasks, now, monitor)
	failed := st.GetFailed() + uint64(len(b.failed))
	if failed > 0 && cfg.GetFailureAction() != objectv1.FailureAction_FAILURE_ACTION_CONTINUE &&
		float64(failed) > float64(cfg.GetMaxFailureRatio())*float64(st.GetUpdated()) {
		return p, failUpdate(tx, svc, st, b.lastFailure, now, stats, &p)
	}
	if b.settling > 0 {
		if !b.due.IsZero() {
			stats.wake(svc.Id, b.due)
		}
		return p, setUpdateStatus(tx, svc, st, stats)
	}
	// The batch passed its monitor period (or there was none yet).
	if delay := cfg.GetDelay().AsDuration(); delay > 0 && !b.lastUp.IsZero() {
		if next := b.lastUp.Add(monitor).Add(delay); now.Before(next) {
			stats.wake(svc.Id, next)
			return p, setUpdateStatus(tx, svc, st, stats)
		}
	}
	st.Failed = failed
	if len(waiting) == 0 {
		completeUpdate(st, now)
		return p, setUpdateStatus(tx, svc, st, stats)
	}
	p, err = startBatch(tx, cfg, st, waiting, now, stats)
	if err != nil {
		return p, err
	}
	return p, setUpdateStatus(tx, svc, st, stats)
}

// letReplacedGo retires the old tasks whose start-first replacement runs,
// whatever the update's state: the slot's replacement was decided already.
// It returns the old tasks that have no replacement yet.
func letReplacedGo(tx *state.Tx, stale []staleSlot, stats *passStats) ([]*objectv1.Task, error) {
	var waiting []*objectv1.Task
	for _, s := range stale {
		switch {
		case s.repl == nil:
			waiting = append(waiting, s.old)
		case up(s.repl):
			if err := retire(tx, s.old, stats); err != nil {
				return nil, err
			}
		}
	}
	return waiting, nil
}

// updateStatus returns a copy of svc's update status as this pass starts
// it: the update of this spec going on, a new one when tasks wait for
// replacement, or an unfinished one of an older spec carried on under this
// one. It returns nil when there is no update to move on.
func updateStatus(svc *objectv1.Service, waiting bool, now time.Time) *objectv1.UpdateStatus {
	st := proto.Clone(svc.GetUpdateStatus()).(*objectv1.UpdateStatus)
	if svc.GetUpdateStatus() == nil {
		st = nil
	}
	switch {
	case st.GetSpecVersion() == svc.GetSpecVersion() && !updateDone(st):
		// The update of this spec goes on.
	case waiting:
		// A new update: the spec changed (or tasks are out of date again
		// after one completed). A paused one resumes with fresh counts, as
		// when a Docker service is updated again.
		rollback := st.GetSpecVersion() == svc.GetSpecVersion() && st.GetState() == rollbackCompleted
		st = &objectv1.UpdateStatus{State: updating, StartedAt: timestamppb.New(now), SpecVersion: svc.GetSpecVersion()}
		if rollback {
			st.State = rollbackStarted
		}
	case st != nil && !updateDone(st):
		// An unfinished update of an older spec, and this spec has nothing
		// left to replace: it finishes under this spec_version.
		st.SpecVersion = svc.GetSpecVersion()
		switch st.GetState() {
		case updatePaused:
			st.State = updating
		case rollbackPaused:
			st.State = rollbackStarted
		}
	default:
		return nil
	}
	return st
}

// completeUpdate marks st, whose update has no task left to replace,
// completed (or rolled back).
func completeUpdate(st *objectv1.UpdateStatus, now time.Time) {
	if st.GetState() == rollbackStarted {
		// The message keeps why the update was rolled back ("update
		// rolled back: task ... failed: exit code 1"): that is what
		// whoever reads the status once it is over needs.
		st.State = rollbackCompleted
		if st.GetMessage() == "" {
			st.Message = "rollback completed"
		}
	} else {
		st.State, st.Message = updateCompleted, "update completed"
	}
	if st.GetFailed() > 0 {
		st.Message += fmt.Sprintf(" (%d of %d new tasks failed)", st.GetFailed(), st.GetUpdated())
	}
	st.CompletedAt = timestamppb.New(now)
	st.BatchStartedAt = nil
}

// startBatch starts the next batch of the update: up to parallelism of the
// waiting tasks, lowest slot (node) first, retired now stop-first, or left
// beside their replacements start-first. It counts them in st.
func startBatch(tx *state.Tx, cfg *objectv1.UpdateConfig, st *objectv1.UpdateStatus, waiting []*objectv1.Task, now time.Time, stats *passStats) (plan, error) {
	var p plan
	sort.Slice(waiting, func(i, j int) bool {
		if waiting[i].GetSlot() != waiting[j].GetSlot() {
			return waiting[i].GetSlot() < waiting[j].GetSlot()
		}
		return waiting[i].GetNodeId() < waiting[j].GetNodeId()
	})
	n := len(waiting)
	if par := cfg.GetParallelism(); par > 0 && par < uint64(n) {
		n = int(par)
	}
	batch := waiting[:n]
	st.Updated += uint64(n)
	st.BatchStartedAt = timestamppb.New(now)
	if cfg.GetOrder() == objectv1.UpdateOrder_UPDATE_ORDER_START_FIRST {
		p.started = batch
		return p, nil
	}
	for _, t := range batch {
		if err := retire(tx, t, stats); err != nil {
			return p, err
		}
	}
	p.stopped = batch
	return p, nil
}

// defaultRollback paces a rollback of a spec with neither a rollback nor an
// update config: Docker's rollback defaults, one task at a time and
// stop-first, the safest way back.
var defaultRollback = &objectv1.UpdateConfig{
	Parallelism:   1,
	FailureAction: objectv1.FailureAction_FAILURE_ACTION_PAUSE,
	Monitor:       durationpb.New(5 * time.Second),
	Order:         objectv1.UpdateOrder_UPDATE_ORDER_STOP_FIRST,
}

// pacing is the config that paces the update st says is under way. A
// rollback (automatic, or `service rollback`, which the control API marks
// ROLLBACK_STARTED) uses the rollback config of the spec rolled back to,
// as swarm does, else its update config, else defaultRollback. A failure
// action of ROLLBACK in it pauses: a rollback is not rolled back
// (failUpdate).
func pacing(spec *objectv1.ServiceSpec, st *objectv1.UpdateStatus) *objectv1.UpdateConfig {
	if st.GetState() != rollbackStarted {
		return spec.GetUpdate()
	}
	if r := spec.GetRollback(); r != nil {
		return r
	}
	if u := spec.GetUpdate(); u != nil {
		return u
	}
	return defaultRollback
}

// updateDone reports whether an update status is final: completed, or
// rolled back.
func updateDone(st *objectv1.UpdateStatus) bool {
	return st.GetState() == updateCompleted || st.GetState() == rollbackCompleted
}

// batch is what the tasks say of an update's current batch: the tasks with
// the service's spec created since update_status.batch_started_at.
type batch struct {
	// settling counts its tasks desired running that are not RUNNING yet,
	// or not for monitor yet.
	settling int
	// due is when the first of the running ones has run for monitor.
	due time.Time
	// lastUp is when the last of them started running.
	lastUp time.Time
	// failed holds, per slot (node), a task of the batch that failed.
	failed map[string]*objectv1.Task
	// lastFailure is the latest of those failures.
	lastFailure *objectv1.Task
}

func watchBatch(svc *objectv1.Service, st *objectv1.UpdateStatus, tasks []*objectv1.Task, now time.Time, monitor time.Duration) batch {
	b := batch{failed: map[string]*objectv1.Task{}}
	if st.GetBatchStartedAt() == nil {
		return b
	}
	start := st.GetBatchStartedAt().AsTime()
	for _, t := range tasks {
		if t.GetMeta().GetCreatedAt().AsTime().Before(start) || outdated(t, svc) {
			continue
		}
		switch s := t.GetStatus().GetState(); {
		case s == objectv1.TaskState_TASK_STATE_FAILED || s == objectv1.TaskState_TASK_STATE_REJECTED || unhealthy(t):
			b.failed[slotKey(t)] = t
			if b.lastFailure == nil || laterStatus(t, b.lastFailure) {
				b.lastFailure = t
			}
		case !wanted(t) || ended(t):
			// Not wanted any more, or ended without failing: nothing to
			// wait for. A held task is waited for: it has not run yet.
		case s < objectv1.TaskState_TASK_STATE_RUNNING || !up(t):
			// Not running yet, or running without a passed health check:
			// its status changes when it does, which wakes the pass.
			b.settling++
		default:
			up := t.GetStatus().GetTimestamp().AsTime()
			if up.After(b.lastUp) {
				b.lastUp = up
			}
			if at := up.Add(monitor); now.Before(at) {
				b.settling++
				if b.due.IsZero() || at.Before(b.due) {
					b.due = at
				}
			}
		}
	}
	return b
}

// up reports whether a task counts as started for a rolling update: it
// runs and, when it has a health check, the check has passed (as swarm
// waits for a container's health before the update's monitor starts).
func up(t *objectv1.Task) bool {
	return t.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_RUNNING &&
		t.GetStatus().GetHealth() != objectv1.TaskHealth_TASK_HEALTH_STARTING && !unhealthy(t)
}

// unhealthy reports whether a task runs but its health check failed: its
// node stops it and reports it FAILED; the orchestrator counts it failed
// at once.
func unhealthy(t *objectv1.Task) bool {
	return t.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_RUNNING &&
		t.GetStatus().GetHealth() == objectv1.TaskHealth_TASK_HEALTH_UNHEALTHY
}

// slotKey names a task's slot, or its node for a global service's task.
func slotKey(t *objectv1.Task) string {
	if t.GetSlot() != 0 {
		return "#" + strconv.FormatUint(t.GetSlot(), 10)
	}
	return t.GetNodeId()
}

func laterStatus(a, b *objectv1.Task) bool {
	at, bt := a.GetStatus().GetTimestamp().AsTime(), b.GetStatus().GetTimestamp().AsTime()
	if !at.Equal(bt) {
		return at.After(bt)
	}
	return a.Id > b.Id
}

// failUpdate applies the failure action once failures exceeded the ratio:
// a rollback when asked for and possible, a pause otherwise.
func failUpdate(tx *state.Tx, svc *objectv1.Service, st *objectv1.UpdateStatus, failure *objectv1.Task, now time.Time, stats *passStats, p *plan) error {
	cause := failureCause(failure)
	if st.GetState() == rollbackStarted {
		st.State, st.Message = rollbackPaused, "rollback paused: "+cause
		return setUpdateStatus(tx, svc, st, stats)
	}
	st.State, st.Message = updatePaused, "update paused: "+cause
	if svc.GetSpec().GetUpdate().GetFailureAction() != objectv1.FailureAction_FAILURE_ACTION_ROLLBACK {
		return setUpdateStatus(tx, svc, st, stats)
	}
	prev := svc.GetPreviousSpec()
	if prev == nil {
		st.Message += " (no previous spec to roll back to)"
		return setUpdateStatus(tx, svc, st, stats)
	}
	if other := tx.ServiceByName(prev.GetAnnotations().GetName()); other != nil && other.Id != svc.Id {
		st.Message += fmt.Sprintf(" (cannot roll back: the previous name %q is now service %s's)", prev.GetAnnotations().GetName(), other.Id)
		return setUpdateStatus(tx, svc, st, stats)
	}
	// As Docker does, the rollback forgets the failed spec: a rollback is
	// not rolled back in turn.
	next := proto.Clone(svc).(*objectv1.Service)
	next.Spec = prev
	next.PreviousSpec = nil
	next.SpecVersion = svc.GetSpecVersion() + 1
	next.UpdateStatus = &objectv1.UpdateStatus{
		State:       rollbackStarted,
		StartedAt:   timestamppb.New(now),
		Message:     "update rolled back: " + cause,
		SpecVersion: next.SpecVersion,
	}
	p.respec = true
	stats.note(svc.Id, next.UpdateStatus)
	return tx.UpdateService(next)
}

// failureCause says why a task failed, for people: "task 4fq2 failed: exit
// code 1".
func failureCause(t *objectv1.Task) string {
	s := t.GetStatus()
	verb := "failed"
	switch {
	case s.GetState() == objectv1.TaskState_TASK_STATE_REJECTED:
		verb = "was rejected"
	case unhealthy(t):
		verb = "is unhealthy"
	}
	why := s.GetErr()
	switch {
	case why == "" && s.GetExitCode() != 0:
		why = fmt.Sprintf("exit code %d", s.GetExitCode())
	case why == "":
		why = s.GetMessage()
	}
	if why == "" {
		return fmt.Sprintf("task %s %s", t.Id, verb)
	}
	return fmt.Sprintf("task %s %s: %s", t.Id, verb, why)
}

// setUpdateStatus writes svc's update status when it changed.
func setUpdateStatus(tx *state.Tx, svc *objectv1.Service, st *objectv1.UpdateStatus, stats *passStats) error {
	if proto.Equal(svc.GetUpdateStatus(), st) {
		return nil
	}
	next := proto.Clone(svc).(*objectv1.Service)
	next.UpdateStatus = st
	if svc.GetUpdateStatus().GetState() != st.GetState() || svc.GetUpdateStatus().GetSpecVersion() != st.GetSpecVersion() {
		stats.note(svc.Id, st)
	}
	return tx.UpdateService(next)
}
