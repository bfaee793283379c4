package orchestrator

import (
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// nodeLost reports whether a task's node is lost: its tasks will not be
// heard of again and are replaced elsewhere. A node is lost when it is down,
// or when it was removed from the cluster (`node rm --force` while up): its
// session is closed and it cannot open another.
func nodeLost(tx *state.ReadTx, id string) bool {
	return lostReason(tx, id) != ""
}

// lostReason says why a node is lost, or "" if it is not.
func lostReason(tx *state.ReadTx, id string) string {
	n := tx.Node(id)
	switch {
	case n == nil:
		return "node removed"
	case n.GetStatus().GetState() == objectv1.NodeState_NODE_STATE_DOWN:
		return "node down"
	}
	return ""
}

// nodeDrained reports whether a node is drained: it is up, but its tasks
// are to be shut down there and replaced elsewhere, as in swarm. Setting it
// back to active moves nothing back; it only takes new tasks again.
func nodeDrained(tx *state.ReadTx, id string) bool {
	return tx.Node(id).GetSpec().GetAvailability() == objectv1.NodeAvailability_NODE_AVAILABILITY_DRAIN
}

// eligibleNodes sorts the nodes for services with a task per node (global
// services and global jobs). Only nodes that run tasks (up, with an
// executor) count. keeps holds those that keep their tasks: active and
// paused ones, not drained ones. accepts holds those that get new tasks:
// active ones only, as a paused node "keeps its tasks but accepts no new
// ones", a replacement included.
func eligibleNodes(tx *state.ReadTx) (keeps, accepts map[string]bool) {
	keeps, accepts = map[string]bool{}, map[string]bool{}
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
	return keeps, accepts
}

// uncovered returns, sorted, the nodes of accepts for which covered is
// false: those that get a new task.
func uncovered(accepts map[string]bool, covered func(id string) bool) []string {
	var ids []string
	for _, id := range sortedKeys(accepts) {
		if !covered(id) {
			ids = append(ids, id)
		}
	}
	return ids
}

// orphan takes a task of a lost node out of service: it is marked ORPHANED
// (its node is not there to report) and not wanted, so a node that comes
// back removes it instead of running it twice.
func orphan(tx *state.Tx, t *objectv1.Task, now time.Time, stats *passStats) error {
	next := proto.Clone(t).(*objectv1.Task)
	next.DesiredState = objectv1.TaskState_TASK_STATE_SHUTDOWN
	next.Status = &objectv1.TaskStatus{
		Timestamp: timestamppb.New(now),
		State:     objectv1.TaskState_TASK_STATE_ORPHANED,
		Message:   lostReason(tx.ReadTx, t.GetNodeId()) + ": task replaced",
	}
	stats.orphaned++
	return tx.UpdateTask(next)
}

// onDrainedNode reports whether a task runs (placed, not ended) on a
// drained node; it counts it in stats.drained, as the caller retires it.
func onDrainedNode(tx *state.ReadTx, t *objectv1.Task, stats *passStats) bool {
	if placed(t) && !ended(t) && nodeDrained(tx, t.GetNodeId()) {
		stats.drained++
		return true
	}
	return false
}

// onLostNode reports whether a task runs (placed, not ended) on a lost
// node, to be orphaned.
func onLostNode(tx *state.ReadTx, t *objectv1.Task) bool {
	return placed(t) && !ended(t) && nodeLost(tx, t.GetNodeId())
}
