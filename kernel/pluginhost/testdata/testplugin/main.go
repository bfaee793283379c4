// Command testplugin is a scheduler plugin for pluginhost's tests. It places
// every task on the first node of the request. It takes two settings:
// greeting, which it logs at Warn when configured and repeats in its
// refusals, so a test can tell that Configure ran in the process it talks
// to; and wait_for, a file path: until that file exists, Configure fails
// as sdk.ErrUnavailable, like a plugin whose backend is not up yet.
package main

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/shoalhq/shoal/sdk"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
	"github.com/shoalhq/shoal/sdk/scheduler"
)

type config struct {
	Greeting string `toml:"greeting"`
	WaitFor  string `toml:"wait_for"`
}

type firstNode struct {
	log hclog.Logger

	mu       sync.Mutex
	greeting string
}

func (s *firstNode) Configure(_ context.Context, data []byte) error {
	var c config
	if err := sdk.DecodeConfig(data, &c); err != nil {
		return err
	}
	if c.WaitFor != "" {
		if _, err := os.Stat(c.WaitFor); err != nil {
			return fmt.Errorf("waiting for %s: %w", c.WaitFor, sdk.ErrUnavailable)
		}
	}
	s.mu.Lock()
	s.greeting = c.Greeting
	s.mu.Unlock()
	s.log.Warn("configured", "greeting", c.Greeting)
	return nil
}

func (s *firstNode) Schedule(_ context.Context, req *schedulerv1.ScheduleRequest) (*schedulerv1.ScheduleResponse, error) {
	s.mu.Lock()
	greeting := s.greeting
	s.mu.Unlock()
	resp := &schedulerv1.ScheduleResponse{}
	for _, t := range req.GetTasks() {
		d := &schedulerv1.Decision{TaskId: t.GetId()}
		if nodes := req.GetUpsertNodes(); len(nodes) > 0 {
			d.NodeId = nodes[0].GetId()
		} else {
			d.Refusal = "no nodes; greeting " + greeting
		}
		resp.Decisions = append(resp.Decisions, d)
	}
	return resp, nil
}

func main() {
	// os.Stderr is read before Serve redirects it: these lines go to the
	// plugin's real stderr, which the kernel re-levels.
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: os.Stderr, JSONFormat: true})
	scheduler.Serve(&firstNode{log: log})
}
