package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/shoalhq/shoal/sdk"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
	"github.com/shoalhq/shoal/sdk/scheduler"
)

// Config is the plugin's [plugins.scheduler.config] table.
type Config struct {
	// SpreadOverHosts ranks the nodes that run fewest tasks of the task's
	// service first, after the placement preferences, so that replicas land
	// on different nodes and one node's loss takes few of them. With false,
	// only the nodes' whole load counts (fewest tasks, then least
	// reserved), and replicas of a service may share a node while other
	// nodes are busier. Default: true.
	SpreadOverHosts bool `toml:"spread_over_hosts"`
}

// DefaultConfig returns the settings used when the table is unset.
func DefaultConfig() Config {
	return Config{SpreadOverHosts: true}
}

// Spread is the spread scheduler. The kernel calls it from one goroutine at
// a time; a mutex makes concurrent calls safe anyway, one after the other.
type Spread struct {
	mu   sync.Mutex
	cfg  Config
	view scheduler.View
}

var (
	_ scheduler.Scheduler  = (*Spread)(nil)
	_ scheduler.Configurer = (*Spread)(nil)
)

// New returns a spread scheduler with the default settings and no view.
func New() *Spread {
	return &Spread{cfg: DefaultConfig()}
}

// Configure decodes the plugin's settings strictly: an unknown key is an
// error naming it. An empty config restores the defaults.
func (s *Spread) Configure(_ context.Context, config []byte) error {
	cfg := DefaultConfig()
	if err := sdk.DecodeConfig(config, &cfg); err != nil {
		return fmt.Errorf("configure: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg = cfg
	return nil
}

// Schedule applies the request's view changes and decides every task, in
// the order of the request. A request whose view_base is not the view held
// fails with sdk.ErrFailedPrecondition; an invalid one with
// sdk.ErrInvalidArgument; both leave the view as it was. A cancelled ctx
// returns ctx.Err(); the view changes may then have been applied, and the
// view's version says so.
func (s *Spread) Schedule(ctx context.Context, req *schedulerv1.ScheduleRequest) (*schedulerv1.ScheduleResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("schedule: %w", err)
	}
	if err := s.view.Apply(req); err != nil {
		return nil, fmt.Errorf("schedule: %w", err)
	}
	decisions, err := newBatch(s.view.Nodes(), s.cfg).decide(ctx, req.GetTasks())
	if err != nil {
		return nil, fmt.Errorf("schedule: %w", err)
	}
	return &schedulerv1.ScheduleResponse{Decisions: decisions}, nil
}
