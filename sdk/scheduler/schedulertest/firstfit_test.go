package schedulertest_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/shoalhq/shoal/sdk"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
	"github.com/shoalhq/shoal/sdk/scheduler"
)

// firstFit is a complete scheduler, small enough to read in one sitting:
// it keeps the view between calls and places each task on the first node,
// in ID order, that meets its constraints, its cap and its reservations.
// It passes the kit; a real scheduler would also spread.
type firstFit struct {
	mu      sync.Mutex
	held    bool // whether it holds a view at all
	version uint64
	nodes   map[string]*schedulerv1.NodeInfo
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
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if base := req.GetViewBase(); base != 0 && (!f.held || base != f.version) {
		return nil, fmt.Errorf("view %d is not the view held (%d): %w", base, f.version, sdk.ErrFailedPrecondition)
	}
	if req.GetViewBase() == 0 {
		f.nodes = make(map[string]*schedulerv1.NodeInfo)
	}
	for _, n := range req.GetUpsertNodes() {
		f.nodes[n.GetId()] = n
	}
	for _, id := range req.GetRemovedNodes() {
		delete(f.nodes, id)
	}
	f.held, f.version = true, req.GetViewVersion()

	ids := slices.Sorted(maps.Keys(f.nodes))
	// used holds what this batch placed, per node: reservations and tasks
	// per service.
	type use struct {
		cpu, mem int64
		tasks    map[string]uint64
	}
	used := make(map[string]*use, len(ids))
	resp := &schedulerv1.ScheduleResponse{}
	for i, t := range req.GetTasks() {
		if i%100 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		d := &schedulerv1.Decision{TaskId: t.GetId(), Refusal: "no suitable node: none meets the constraints, the cap and the reservations"}
		for _, id := range ids {
			n, u := f.nodes[id], used[id]
			if u == nil {
				u = &use{tasks: make(map[string]uint64)}
				used[id] = u
			}
			if fits(n, t, u.cpu, u.mem, u.tasks[t.GetServiceId()]) {
				u.cpu += t.GetReservations().GetNanoCpus()
				u.mem += t.GetReservations().GetMemoryBytes()
				u.tasks[t.GetServiceId()]++
				d.NodeId, d.Refusal = id, ""
				break
			}
		}
		resp.Decisions = append(resp.Decisions, d)
	}
	return resp, nil
}

// fits reports whether task t fits node n, given what the batch already
// placed there.
func fits(n *schedulerv1.NodeInfo, t *schedulerv1.TaskInfo, cpu, mem int64, tasks uint64) bool {
	for _, c := range t.GetPlacement().GetConstraints() {
		if !meets(n, c) {
			return false
		}
	}
	if limit := t.GetPlacement().GetMaxReplicasPerNode(); limit > 0 && uint64(n.GetServiceTasks()[t.GetServiceId()])+tasks >= limit {
		return false
	}
	return fitsResource(n.GetTotal().GetNanoCpus(), n.GetReserved().GetNanoCpus()+cpu, t.GetReservations().GetNanoCpus()) &&
		fitsResource(n.GetTotal().GetMemoryBytes(), n.GetReserved().GetMemoryBytes()+mem, t.GetReservations().GetMemoryBytes())
}

// fitsResource: a node that does not report a total takes only tasks that
// reserve none of it.
func fitsResource(total, used, want int64) bool {
	return want == 0 || total > 0 && used+want <= total
}

// meets evaluates a constraint with the SDK's language.
func meets(n *schedulerv1.NodeInfo, expr string) bool {
	c, err := scheduler.ParseConstraint(expr)
	return err == nil && c.Match(n)
}
