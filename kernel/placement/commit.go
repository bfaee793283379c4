package placement

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
)

// This file writes the plugin's decisions to the store: a node for each
// task placed, the reason on each task refused.

// commit writes a batch's decisions, for the tasks still waiting. It
// returns the tasks done with (placed, or no longer waiting) and refused.
func (p *Placer) commit(ctx context.Context, decisions []*schedulerv1.Decision) (done, no []string, err error) {
	if len(decisions) == 0 {
		return nil, nil, nil
	}

	err = p.raft.Update(ctx, func(tx *state.Tx) error {
		done, no = done[:0], no[:0]
		now := timestamppb.New(tx.Now())
		for _, d := range decisions {
			t := tx.Task(d.GetTaskId())
			if t == nil || !waiting(t) || (t.GetNodeId() != "" && t.GetNodeId() != d.GetNodeId()) {
				done = append(done, d.GetTaskId())
				continue // placed meanwhile (once is enough) or gone
			}
			next := shallowCopy(t)
			if d.GetNodeId() != "" {
				n := tx.Node(d.GetNodeId())
				if n == nil || !eligible(n) {
					no = append(no, d.GetTaskId())
					continue // the node left since the view was sent
				}
				next.NodeId = d.GetNodeId()
				next.Status = &objectv1.TaskStatus{Timestamp: now, State: objectv1.TaskState_TASK_STATE_ASSIGNED, Message: AssignedMessage}
				done = append(done, d.GetTaskId())
			} else {
				msg := refusalMessage(d)
				no = append(no, d.GetTaskId())
				if t.GetStatus().GetMessage() == msg {
					continue
				}
				next.Status = proto.Clone(t.GetStatus()).(*objectv1.TaskStatus)
				next.Status.Message = msg
				next.Status.Timestamp = now
			}
			if err := tx.UpdateTask(next); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("commit placements: %w", err)
	}
	return done, no, nil
}

// shallowCopy returns a new Task holding t's fields, sharing its
// sub-messages. A commit writes 1,000 tasks back with only their node and
// status changed while holding the store's read lock, which the Raft
// applies wait for; proto.Clone copied each whole (spec, annotations,
// networks) by reflection. Sharing is sound because stored objects are
// never modified and the Tx replaces meta rather than changing it, and
// next.Status is set anew (or cloned) before the write.
// TestShallowCopyCoversFields fails when Task gains a field this misses.
func shallowCopy(t *objectv1.Task) *objectv1.Task {
	c := &objectv1.Task{
		Id: t.Id, Meta: t.Meta, ServiceId: t.ServiceId, Slot: t.Slot, NodeId: t.NodeId,
		Spec: t.Spec, SpecVersion: t.SpecVersion, ServiceAnnotations: t.ServiceAnnotations,
		DesiredState: t.DesiredState, Status: t.Status, Networks: t.Networks, Endpoint: t.Endpoint,
	}
	if u := t.ProtoReflect().GetUnknown(); len(u) > 0 {
		c.ProtoReflect().SetUnknown(u)
	}
	return c
}

// refusalMessage is the status message of a task refused by d: the
// plugin's reason behind NoSuitableNode, which it may have written itself.
func refusalMessage(d *schedulerv1.Decision) string {
	msg := d.GetRefusal()
	if !strings.HasPrefix(msg, NoSuitableNode) {
		msg = NoSuitableNode + msg
	}
	return msg
}
