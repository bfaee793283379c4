package schedulertest_test

import (
	"context"
	"sync"

	"github.com/shoalhq/shoal/sdk"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
	"github.com/shoalhq/shoal/sdk/scheduler"
)

// firstFit is a complete scheduler on the SDK's View: each task goes to
// the first node, in ID order, that meets its constraints, its cap and its
// reservations. It passes the kit; a real scheduler would also spread. (The
// same scheduler as a plugin binary is examples/scheduler-firstfit.)
type firstFit struct {
	mu   sync.Mutex
	view scheduler.View
}

var (
	_ scheduler.Scheduler  = (*firstFit)(nil)
	_ scheduler.Configurer = (*firstFit)(nil)
)

func newFirstFit() *firstFit { return &firstFit{} }

// Configure takes no settings, but refuses unknown ones by name.
func (f *firstFit) Configure(_ context.Context, config []byte) error {
	var settings struct{}
	return sdk.DecodeConfig(config, &settings)
}

func (f *firstFit) Schedule(ctx context.Context, req *schedulerv1.ScheduleRequest) (*schedulerv1.ScheduleResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.view.Apply(req); err != nil {
		return nil, err
	}
	decisions := make([]*schedulerv1.Decision, len(req.GetTasks()))
	for i, t := range req.GetTasks() {
		if i%100 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		nodes, refusal := f.view.Fit(t)
		decisions[i] = &schedulerv1.Decision{TaskId: t.GetId(), Refusal: refusal}
		if len(nodes) > 0 {
			f.view.Place(t, nodes[0])
			decisions[i].NodeId = nodes[0].GetId()
		}
	}
	return &schedulerv1.ScheduleResponse{Decisions: decisions}, nil
}
