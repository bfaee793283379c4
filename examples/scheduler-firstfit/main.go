// Scheduler-firstfit is a whole scheduler plugin: it places each task on the
// first node, by ID, that meets its constraints and has its reservations.
package main

import (
	"context"

	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
	"github.com/shoalhq/shoal/sdk/scheduler"
)

type firstFit struct{ view scheduler.View }

func (f *firstFit) Schedule(ctx context.Context, req *schedulerv1.ScheduleRequest) (*schedulerv1.ScheduleResponse, error) {
	if err := f.view.Apply(req); err != nil {
		return nil, err
	}
	resp := &schedulerv1.ScheduleResponse{}
	for _, t := range req.GetTasks() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d := &schedulerv1.Decision{TaskId: t.GetId()}
		if nodes, refusal := f.view.Fit(t); len(nodes) > 0 {
			d.NodeId = nodes[0].GetId()
			f.view.Place(t, nodes[0])
		} else {
			d.Refusal = refusal
		}
		resp.Decisions = append(resp.Decisions, d)
	}
	return resp, nil
}

func main() { scheduler.Serve(&firstFit{}) }
