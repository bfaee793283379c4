package dispatch

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoalhq/shoal/kernel/allocator"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

const deleteKind = raftv1.ActionKind_ACTION_KIND_DELETE

// sentTask is what a session last told its worker about a task: the
// worker only needs a new copy when what it must do changed, not on every
// status report it sent itself.
type sentTask struct {
	desired     objectv1.TaskState
	specVersion uint64
}

// session is one worker's session on the leader. Fields below peer are
// owned by the dispatcher's event loop.
type session struct {
	id     string
	nodeID string
	d      *Dispatcher
	peer   peer

	sent    map[string]sentTask
	pending []*workerv1.AssignmentChange
	// lastFlush is when changes were last sent: a partial batch waits
	// until maxBatchInterval has passed since then.
	lastFlush time.Time
}

// assigned reports whether t belongs in its node's assignment set: placed,
// and, when wanted running, with an address recorded on each of its
// networks. A task stays in the set after it ended, until the orchestrator
// deletes it (task_history_retention, or its service's removal): the worker
// keeps its container, and so its logs, as long as the task is listed, and
// removes it when the task leaves the set. The executor releases the
// task's network attachments when its process exits (executor.Executor's
// Wait), which is when the allocator frees its addresses.
func assigned(t *objectv1.Task) bool {
	if t.GetStatus().GetState() < objectv1.TaskState_TASK_STATE_ASSIGNED {
		return false
	}
	return t.GetDesiredState() != objectv1.TaskState_TASK_STATE_RUNNING || allocator.Allocated(t)
}

// change records what t's new version means for the worker; it returns true
// when a change is now pending.
func (s *session) change(t *objectv1.Task, removed bool) bool {
	was, had := s.sent[t.Id]
	if removed || t.GetNodeId() != s.nodeID || !assigned(t) {
		if !had {
			return false
		}
		delete(s.sent, t.Id)
		s.queue(&workerv1.AssignmentChange{Action: workerv1.AssignmentChangeAction_ASSIGNMENT_CHANGE_ACTION_REMOVE, Task: &objectv1.Task{Id: t.Id}})
		return true
	}
	now := sentTask{desired: t.GetDesiredState(), specVersion: t.GetSpecVersion()}
	if had && was == now {
		return false
	}
	s.sent[t.Id] = now
	s.queue(&workerv1.AssignmentChange{Action: workerv1.AssignmentChangeAction_ASSIGNMENT_CHANGE_ACTION_UPDATE, Task: t})
	return true
}

func (s *session) queue(c *workerv1.AssignmentChange) {
	s.pending = append(s.pending, c)
}

func (s *session) full() bool { return len(s.pending) >= maxBatch }

// flushDue reports whether the pending changes go now: a full batch at
// once; a partial one once maxBatchInterval has passed since the last
// send. The interval counts from the last send, not from the first pending
// change: a change after a quiet spell (a lone task placed) goes at the
// next tick instead of waiting out the interval, while a stream of changes
// still leaves in at most one partial batch per interval.
func (s *session) flushDue(now time.Time) bool {
	return len(s.pending) > 0 && (s.full() || now.Sub(s.lastFlush) >= maxBatchInterval)
}

// flush sends the pending changes, at most maxBatch per message.
func (s *session) flush() {
	s.lastFlush = time.Now()
	s.d.attachFiles(s.pending)
	for len(s.pending) > 0 {
		n := min(len(s.pending), maxBatch)
		// Large files split a batch (maxBatchFileBytes); a change is never
		// split, and one goes even when it alone is over.
		for i, bytes := 0, 0; i < n; i++ {
			if bytes += changeBytes(s.pending[i]); bytes > maxBatchFileBytes && i > 0 {
				n = i
				break
			}
		}
		batch := s.pending[:n:n]
		s.pending = s.pending[n:]
		s.peer.send(&workerv1.ManagerMessage{Msg: &workerv1.ManagerMessage_Assignments{Assignments: &workerv1.Assignments{
			Type: workerv1.AssignmentsType_ASSIGNMENTS_TYPE_INCREMENTAL, Changes: batch,
		}}})
	}
	s.pending = nil
}

// sendComplete sends the whole assignment set, as the first batch.
func (s *session) sendComplete() {
	var changes []*workerv1.AssignmentChange
	s.d.st.View(func(tx *state.ReadTx) {
		for _, t := range tx.TasksByNode(s.nodeID) {
			if !assigned(t) {
				continue
			}
			s.sent[t.Id] = sentTask{desired: t.GetDesiredState(), specVersion: t.GetSpecVersion()}
			changes = append(changes, &workerv1.AssignmentChange{Action: workerv1.AssignmentChangeAction_ASSIGNMENT_CHANGE_ACTION_UPDATE, Task: t})
		}
	})
	s.d.attachFiles(changes)
	s.peer.send(&workerv1.ManagerMessage{Msg: &workerv1.ManagerMessage_Assignments{Assignments: &workerv1.Assignments{
		Type: workerv1.AssignmentsType_ASSIGNMENTS_TYPE_COMPLETE, Changes: changes,
	}}})
}

// Handle processes one message of the session's worker. It is called from
// the goroutine reading the worker's stream (or the relay), never the loop.
func (s *session) Handle(msg *workerv1.WorkerMessage) error {
	switch m := msg.GetMsg().(type) {
	case *workerv1.WorkerMessage_Heartbeat:
		period := s.d.presence.Beat(s.nodeID)
		s.peer.send(&workerv1.ManagerMessage{Msg: &workerv1.ManagerMessage_Heartbeat{Heartbeat: &workerv1.HeartbeatReply{Period: durationpb.New(period)}}})
	case *workerv1.WorkerMessage_Status:
		return s.d.status.add(s.nodeID, m.Status.GetUpdates())
	case *workerv1.WorkerMessage_Logs:
		s.d.deliverLogs(s, m.Logs)
	case *workerv1.WorkerMessage_VolumeReply:
		s.d.deliverVolumeReply(s, m.VolumeReply)
	case *workerv1.WorkerMessage_Hello:
		return fmt.Errorf("hello sent twice: %w", sdk.ErrInvalidArgument)
	default:
		return fmt.Errorf("empty or unknown worker message: %w", sdk.ErrInvalidArgument)
	}
	return nil
}
