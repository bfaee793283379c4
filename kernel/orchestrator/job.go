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

func reconcileJob(tx *state.Tx, svc *objectv1.Service, tasks []*objectv1.Task, now time.Time, stats *passStats) error {
	global := isGlobal(svc)
	var maxConcurrent, total uint64
	accepts := map[string]bool{} // global: the nodes that take new tasks
	keeps := map[string]bool{}   // global: the nodes that keep theirs
	if global {
		for _, n := range tx.Nodes() {
			if n.GetStatus().GetState() == objectv1.NodeState_NODE_STATE_DOWN || n.GetDescription().GetExecutor() == "" {
				continue
			}
			switch n.GetSpec().GetAvailability() {
			case objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE:
				keeps[n.Id], accepts[n.Id] = true, true
			case objectv1.NodeAvailability_NODE_AVAILABILITY_PAUSE:
				keeps[n.Id] = true
			}
		}
	} else {
		maxConcurrent, total = JobBounds(svc.GetSpec().GetReplicatedJob())
	}
	inRange := func(t *objectv1.Task) bool {
		if global {
			return t.GetSlot() == 0 && t.GetNodeId() != ""
		}
		return t.GetSlot() >= 1 && t.GetSlot() <= total
	}
	busy := map[string]bool{} // keys with a task under way
	done := map[string]bool{} // keys whose current task ended for good
	active := 0
	var over []*objectv1.Task
	for _, t := range tasks {
		current := t.GetSpecVersion() == svc.GetSpecVersion()
		switch {
		case !current || !inRange(t):
			// An older run of the job, or a slot beyond total_completions:
			// stop what is still under way; the rest is history.
			if wanted(t) || finished(t) {
				if err := retire(tx, t, stats); err != nil {
					return err
				}
			}
		case finished(t):
			if done[slotKey(t)] || (global && !keeps[t.GetNodeId()] && !succeeded(t)) {
				if err := retire(tx, t, stats); err != nil {
					return err
				}
				continue
			}
			done[slotKey(t)] = true
		case !wanted(t):
			// History.
		case placed(t) && !ended(t) && nodeLost(tx.ReadTx, t.GetNodeId()):
			if err := orphan(tx, t, now, stats); err != nil {
				return err
			}
		case placed(t) && !ended(t) && nodeDrained(tx.ReadTx, t.GetNodeId()):
			stats.drained++
			if err := retire(tx, t, stats); err != nil {
				return err
			}
		case global && !ended(t) && !keeps[t.GetNodeId()]:
			if err := retire(tx, t, stats); err != nil {
				return err
			}
		case ended(t):
			over = append(over, t)
		default:
			if busy[slotKey(t)] {
				// A duplicate: one task per slot.
				if err := retire(tx, t, stats); err != nil {
					return err
				}
				continue
			}
			busy[slotKey(t)] = true
			active++
		}
	}
	sort.Slice(over, func(i, j int) bool { return over[i].Id < over[j].Id })
	for _, t := range over {
		k := slotKey(t)
		if busy[k] || done[k] {
			if err := retire(tx, t, stats); err != nil {
				return err
			}
			continue
		}
		// A success is never run again; a failure is the restart policy's
		// call.
		again, at := false, time.Time{}
		if !succeeded(t) {
			again, at = decide(svc, t, tasks, now)
		}
		if again && !at.IsZero() {
			// The restart delay runs: the slot stays under way.
			busy[k] = true
			active++
			stats.wake(svc.Id, at)
			continue
		}
		if err := settleEnded(tx, t, again); err != nil {
			return err
		}
		if !again {
			done[k] = true
		}
	}
	if global {
		ids := make([]string, 0, len(accepts))
		for id := range accepts {
			if !busy[id] && !done[id] {
				ids = append(ids, id)
			}
		}
		sort.Strings(ids)
		for _, id := range ids {
			if err := tx.CreateTask(newTask(svc, 0, id, now)); err != nil {
				return err
			}
			stats.created++
		}
		return nil
	}
	for slot := uint64(1); slot <= total && uint64(active) < maxConcurrent; slot++ {
		if k := "#" + strconv.FormatUint(slot, 10); busy[k] || done[k] {
			continue
		}
		if err := tx.CreateTask(newTask(svc, slot, "", now)); err != nil {
			return err
		}
		stats.created++
		active++
	}
	return nil
}
