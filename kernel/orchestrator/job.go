package orchestrator

import (
	"sort"
	"strconv"
	"time"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// Jobs (replicated-job and global-job modes) run tasks to completion, as in
// Docker swarm mode:
//
//   - A replicated job has total_completions slots (1..total); a slot is
//     done once a task of the service's current spec_version COMPLETEs in
//     it. At most max_concurrent slots have a task under way (desired
//     running and not ended, or waiting out a restart delay); free slots
//     get tasks lowest first.
//   - A global job runs one task per node that takes new tasks (up, active,
//     with an executor); a node is done once a current task COMPLETEs on it.
//     A node that joins later gets a task too.
//   - A task that succeeds is never restarted, whatever the restart policy.
//     A task that fails is replaced per the policy (the control API
//     defaults it to on-failure for jobs); one the policy lets end stays,
//     desired COMPLETE, and holds its slot (node): the job will not finish
//     that slot, and does not retry it without end.
//   - Updating the service (every spec change bumps spec_version) runs the
//     job again: tasks of older spec_versions are stopped if still under
//     way, and become history (they count toward no completion). There is
//     no rolling update for jobs.
//   - Tasks on lost nodes are orphaned and those on drained nodes stopped;
//     their slots are run again (a replicated job's, elsewhere).

// isJob reports whether a service runs in a job mode.
func isJob(svc *objectv1.Service) bool {
	return svc.GetSpec().GetReplicatedJob() != nil || svc.GetSpec().GetGlobalJob() != nil
}

// isGlobal reports whether a service has one task per node: global, or a
// global job.
func isGlobal(svc *objectv1.Service) bool {
	return svc.GetSpec().GetGlobal() != nil || svc.GetSpec().GetGlobalJob() != nil
}

// JobBounds returns a replicated job's max_concurrent and total_completions
// with the proto's defaults applied (max_concurrent 0 means 1;
// total_completions 0 means max_concurrent).
func JobBounds(j *objectv1.ReplicatedJob) (maxConcurrent, total uint64) {
	maxConcurrent = max(j.GetMaxConcurrent(), 1)
	total = j.GetTotalCompletions()
	if total == 0 {
		total = maxConcurrent
	}
	return maxConcurrent, total
}

// succeeded reports whether a task ran to completion.
func succeeded(t *objectv1.Task) bool {
	return t.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_COMPLETE
}

// jobPass runs one job service's slots (nodes, for a global job) in one
// pass, by slotKey.
type jobPass struct {
	tx    *state.Tx
	svc   *objectv1.Service
	tasks []*objectv1.Task // all the service's tasks, history included
	now   time.Time
	stats *passStats

	global bool
	// maxConcurrent and total are a replicated job's JobBounds.
	maxConcurrent, total uint64
	// keeps and accepts are a global job's eligibleNodes.
	keeps, accepts map[string]bool

	// busy holds the slots with a task under way, active counts them.
	busy   map[string]bool
	active int
	// done holds the slots whose current task ended for good.
	done map[string]bool
}

// reconcileJob runs a job's tasks to completion (see the top of this file):
// it settles the tasks the job has, then starts the slots it may.
func reconcileJob(tx *state.Tx, svc *objectv1.Service, tasks []*objectv1.Task, now time.Time, stats *passStats) error {
	j := &jobPass{tx: tx, svc: svc, tasks: tasks, now: now, stats: stats, global: isGlobal(svc),
		busy: map[string]bool{}, done: map[string]bool{}}
	if j.global {
		j.keeps, j.accepts = eligibleNodes(tx.ReadTx)
	} else {
		j.maxConcurrent, j.total = JobBounds(svc.GetSpec().GetReplicatedJob())
	}
	var over []*objectv1.Task
	for _, t := range tasks {
		isOver, err := j.settle(t)
		if err != nil {
			return err
		}
		if isOver {
			over = append(over, t)
		}
	}
	sort.Slice(over, func(i, j int) bool { return over[i].Id < over[j].Id })
	for _, t := range over {
		if err := j.restart(t); err != nil {
			return err
		}
	}
	return j.start()
}

// inRange reports whether a task has one of the job's slots: one of
// 1..total_completions, or, for a global job, a node.
func (j *jobPass) inRange(t *objectv1.Task) bool {
	if j.global {
		return t.GetSlot() == 0 && t.GetNodeId() != ""
	}
	return t.GetSlot() >= 1 && t.GetSlot() <= j.total
}

// settle files one task of the job: a slot it keeps busy or done, or
// history, retiring or orphaning what no longer runs where it is. It
// reports whether the task ended while desired running, for restart.
func (j *jobPass) settle(t *objectv1.Task) (bool, error) {
	current := t.GetSpecVersion() == j.svc.GetSpecVersion()
	switch {
	case !current || !j.inRange(t):
		// An older run of the job, or a slot beyond total_completions:
		// stop what is still under way; the rest is history.
		if wanted(t) || finished(t) {
			return false, retire(j.tx, t, j.stats)
		}
	case finished(t):
		if j.done[slotKey(t)] || (j.global && !j.keeps[t.GetNodeId()] && !succeeded(t)) {
			return false, retire(j.tx, t, j.stats)
		}
		j.done[slotKey(t)] = true
	case !wanted(t):
		// History.
	case onLostNode(j.tx.ReadTx, t):
		return false, orphan(j.tx, t, j.now, j.stats)
	case onDrainedNode(j.tx.ReadTx, t, j.stats):
		return false, retire(j.tx, t, j.stats)
	case j.global && !ended(t) && !j.keeps[t.GetNodeId()]:
		return false, retire(j.tx, t, j.stats)
	case ended(t):
		return true, nil
	case j.busy[slotKey(t)]:
		// A duplicate: one task per slot.
		return false, retire(j.tx, t, j.stats)
	default:
		j.busy[slotKey(t)] = true
		j.active++
	}
	return false, nil
}

// restart settles a task that ended while desired running. A success is
// never run again; a failure is the restart policy's call.
func (j *jobPass) restart(t *objectv1.Task) error {
	k := slotKey(t)
	if j.busy[k] || j.done[k] {
		return retire(j.tx, t, j.stats)
	}
	again, at := false, time.Time{}
	if !succeeded(t) {
		again, at = decide(j.svc, t, j.tasks, j.now)
	}
	if again && !at.IsZero() {
		// The restart delay runs: the slot stays under way.
		j.busy[k] = true
		j.active++
		j.stats.wake(j.svc.Id, at)
		return nil
	}
	if err := settleEnded(j.tx, t, again); err != nil {
		return err
	}
	if !again {
		j.done[k] = true
	}
	return nil
}

// start creates the tasks of the slots neither busy nor done: on every
// node that accepts them, for a global job; lowest slots first up to
// max_concurrent under way, for a replicated one.
func (j *jobPass) start() error {
	if j.global {
		for _, id := range uncovered(j.accepts, func(id string) bool { return j.busy[id] || j.done[id] }) {
			if err := create(j.tx, newTask(j.svc, 0, id, j.now), j.stats); err != nil {
				return err
			}
		}
		return nil
	}
	for slot := uint64(1); slot <= j.total && uint64(j.active) < j.maxConcurrent; slot++ {
		if k := "#" + strconv.FormatUint(slot, 10); j.busy[k] || j.done[k] {
			continue
		}
		if err := create(j.tx, newTask(j.svc, slot, "", j.now), j.stats); err != nil {
			return err
		}
		j.active++
	}
	return nil
}
