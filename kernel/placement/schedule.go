package placement

import (
	"context"
	"fmt"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
)

// This file is the call to the scheduler plugin: a batch of waiting tasks
// with the node view's changes out, decisions back, checked against the
// request before anything of them is kept.

// batch is one set of decisions on its way to be committed.
type batch struct {
	decisions []*schedulerv1.Decision
	// placing are the decisions that put a task on a node, with what the
	// task weighs there: the node view sent to the plugin counts them
	// until the commit is applied (see viewChanges).
	placing []placing
}

// placing is one task on its way to a node.
type placing struct {
	nodeID string
	task   *schedulerv1.TaskInfo
}

// decide offers up to batchSize of ids to the scheduler. It returns the
// decisions, and the ids no longer waiting (gone, or placed meanwhile).
func (p *Placer) decide(ctx context.Context, ids []string) (b batch, placed []string, err error) {
	client, err := p.plugin.Get(ctx)
	if err != nil {
		return b, nil, err
	}
	// A restarted plugin holds no view: it answers FailedPrecondition to a
	// request that builds on one, and the next request carries the whole
	// view (see run).
	req := &schedulerv1.ScheduleRequest{}
	// ids come oldest first (see run). Only the lookups of one batch and
	// the view's changes hold the store's read lock, which the Raft
	// applies wait for: a backlog of 10,000 tasks is not read whole for
	// every batch of 1,000.
	var global []*objectv1.Task
	p.st.View(func(tx *state.ReadTx) {
		for _, id := range ids {
			if len(req.Tasks) == batchSize {
				break
			}
			t := tx.Task(id)
			if t == nil || !waiting(t) {
				placed = append(placed, id) // gone or handled: drop it
				continue
			}
			if t.GetNodeId() != "" {
				global = append(global, t) // global tasks come with their node
				continue
			}
			req.Tasks = append(req.Tasks, &schedulerv1.TaskInfo{
				Id: t.Id, ServiceId: t.GetServiceId(),
				Placement: t.GetSpec().GetPlacement(), Reservations: t.GetSpec().GetResources().GetReservations(),
			})
		}
		// A request goes out only with tasks: view changes made for none
		// would advance the version past the plugin's copy, and the next
		// request would be refused and sent again with the whole view.
		// Unsent, the changes stay marked for the next request.
		if len(req.Tasks) > 0 {
			p.viewChanges(tx, req)
		}
	})
	var decisions []*schedulerv1.Decision
	for _, t := range global {
		decisions = append(decisions, &schedulerv1.Decision{TaskId: t.Id, NodeId: t.GetNodeId()})
	}
	if len(req.Tasks) > 0 {
		resp, err := client.Schedule(ctx, req)
		if err != nil {
			return b, nil, fmt.Errorf("scheduler plugin: %w", err)
		}
		p.viewValid = true
		if err := validate(req, resp, p.sent); err != nil {
			// A plugin that breaks its contract places nothing of this
			// batch; the tasks say why, and are offered again later.
			p.log.Error("scheduler plugin reply refused", "error", err)
			decisions = decisions[:0:0]
			for _, t := range req.Tasks {
				decisions = append(decisions, &schedulerv1.Decision{TaskId: t.Id, Refusal: "scheduler plugin error: " + err.Error()})
			}
		} else {
			decisions = append(decisions, resp.GetDecisions()...)
		}
	}
	b.decisions = decisions
	infos := make(map[string]*schedulerv1.TaskInfo, len(req.Tasks))
	for _, t := range req.Tasks {
		infos[t.GetId()] = t
	}
	for _, d := range decisions {
		// A global task is counted on its node from its creation (see
		// counted): only the plugin's placements are added.
		if t, n := infos[d.GetTaskId()], d.GetNodeId(); t != nil && n != "" {
			b.placing = append(b.placing, placing{nodeID: n, task: t})
		}
	}
	return b, placed, nil
}

// refreshView sends the plugin the node view's changes in a request with
// no tasks. On failure the next request sends the whole view.
func (p *Placer) refreshView(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	defer cancel()
	client, err := p.plugin.Get(ctx)
	if err != nil {
		p.viewValid = false
		return
	}
	req := &schedulerv1.ScheduleRequest{}
	p.st.View(func(tx *state.ReadTx) { p.viewChanges(tx, req) })
	resp, err := client.Schedule(ctx, req)
	if err != nil {
		p.viewValid = false
		if ctx.Err() == nil {
			p.log.Debug("refreshing the scheduler's node view", "error", err)
		}
		return
	}
	if err := validate(req, resp, p.sent); err != nil {
		p.log.Error("scheduler plugin reply refused", "error", err)
	}
	p.viewValid = true
}

// validate checks a plugin reply against its request: one decision per
// task, only nodes of the view, a reason with every refusal.
func validate(req *schedulerv1.ScheduleRequest, resp *schedulerv1.ScheduleResponse, view map[string]*schedulerv1.NodeInfo) error {
	want := make(map[string]bool, len(req.GetTasks()))
	for _, t := range req.GetTasks() {
		want[t.GetId()] = true
	}
	seen := make(map[string]bool, len(want))
	for i, d := range resp.GetDecisions() {
		switch {
		case !want[d.GetTaskId()]:
			return fmt.Errorf("decisions[%d]: task %q was not asked for", i, d.GetTaskId())
		case seen[d.GetTaskId()]:
			return fmt.Errorf("decisions[%d]: task %q decided twice", i, d.GetTaskId())
		case d.GetNodeId() == "" && d.GetRefusal() == "":
			return fmt.Errorf("decisions[%d]: task %q has neither a node nor a refusal reason", i, d.GetTaskId())
		case d.GetNodeId() != "" && view[d.GetNodeId()] == nil:
			return fmt.Errorf("decisions[%d]: node %q is not in the view", i, d.GetNodeId())
		}
		seen[d.GetTaskId()] = true
	}
	if len(seen) != len(want) {
		return fmt.Errorf("%d of %d tasks decided", len(seen), len(want))
	}
	return nil
}
