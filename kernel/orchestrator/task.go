package orchestrator

import (
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/kernel/ids"
	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// ended reports whether a task's process is over (or never will run).
func ended(t *objectv1.Task) bool {
	return t.GetStatus().GetState() >= objectv1.TaskState_TASK_STATE_COMPLETE
}

// placed reports whether a task was ever handed to a node.
func placed(t *objectv1.Task) bool {
	return t.GetStatus().GetState() >= objectv1.TaskState_TASK_STATE_ASSIGNED
}

// finished reports whether the orchestrator let a task end for good: it
// ended and its restart policy did not replace it. Such a task keeps its
// slot (or node) with desired state COMPLETE, as in SwarmKit. Were it marked
// SHUTDOWN like a replaced task, its slot would look empty to the next pass
// over the service (a scale change, another task ending, a new leader's
// first view) and that pass would start the task again, against the policy.
func finished(t *objectv1.Task) bool {
	return t.GetDesiredState() == objectv1.TaskState_TASK_STATE_COMPLETE
}

// retired reports whether a task is only history: not wanted, and its node
// (if it had one) is done with it.
func retired(t *objectv1.Task) bool {
	return !wanted(t) && !finished(t) && (ended(t) || !placed(t))
}

// outdated reports whether a task's copy of its service's spec differs from
// the service's. It compares content, not only spec_version: every spec
// change bumps spec_version, the replica count included, and rewriting every
// pending task of a service on a scale change would make the write as big as
// the service and make the scheduler's concurrent placement of those tasks
// fail on version conflicts. A task whose copy matches keeps the
// spec_version it was written at.
func outdated(t *objectv1.Task, svc *objectv1.Service) bool {
	return t.GetSpecVersion() != svc.GetSpecVersion() &&
		(!proto.Equal(t.GetSpec(), svc.GetSpec().GetTask()) ||
			!proto.Equal(t.GetServiceAnnotations(), svc.GetSpec().GetAnnotations()) ||
			!proto.Equal(t.GetEndpoint(), svc.GetSpec().GetEndpoint()))
}

// retire takes a task out of service: never-placed tasks are deleted
// outright; placed ones are asked to shut down, so their node stops them.
func retire(tx *state.Tx, t *objectv1.Task, stats *passStats) error {
	if !placed(t) {
		stats.removed++
		return tx.DeleteTask(t.Id)
	}
	if t.GetDesiredState() >= objectv1.TaskState_TASK_STATE_SHUTDOWN {
		return nil
	}
	next := proto.Clone(t).(*objectv1.Task)
	next.DesiredState = objectv1.TaskState_TASK_STATE_SHUTDOWN
	stats.stopped++
	return tx.UpdateTask(next)
}

// refresh returns a copy of a task (one not placed yet) that carries its
// service's current spec.
func refresh(t *objectv1.Task, svc *objectv1.Service) *objectv1.Task {
	next := proto.Clone(t).(*objectv1.Task)
	next.Spec = svc.GetSpec().GetTask()
	next.SpecVersion = svc.GetSpecVersion()
	next.ServiceAnnotations = svc.GetSpec().GetAnnotations()
	next.Endpoint = svc.GetSpec().GetEndpoint()
	return next
}

// newTask returns a new pending task of svc for a slot (slot 0 and nodeID,
// for a task per node), desired running.
func newTask(svc *objectv1.Service, slot uint64, nodeID string, now time.Time) *objectv1.Task {
	return &objectv1.Task{
		Id:                 ids.New(),
		ServiceId:          svc.Id,
		Slot:               slot,
		NodeId:             nodeID,
		Spec:               svc.GetSpec().GetTask(),
		SpecVersion:        svc.GetSpecVersion(),
		ServiceAnnotations: svc.GetSpec().GetAnnotations(),
		Endpoint:           svc.GetSpec().GetEndpoint(),
		DesiredState:       objectv1.TaskState_TASK_STATE_RUNNING,
		Status: &objectv1.TaskStatus{
			Timestamp: timestamppb.New(now),
			State:     objectv1.TaskState_TASK_STATE_PENDING,
			Message:   PendingMessage,
		},
	}
}

// create writes a new task and counts it in stats.created.
func create(tx *state.Tx, t *objectv1.Task, stats *passStats) error {
	if err := tx.CreateTask(t); err != nil {
		return err
	}
	stats.created++
	return nil
}
