// Package node runs what a node's config asks for: a manager, or a worker
// (the agent with its executor). It is the agent daemon's wiring; cmd/shoal
// only parses flags and calls Run.
package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/shoalhq/shoal/kernel/agent"
	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/kernel/config"
	"github.com/shoalhq/shoal/kernel/manager"
	"github.com/shoalhq/shoal/kernel/simexec"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// Run runs the node until ctx ends.
func Run(ctx context.Context, cfg config.Config, logger *slog.Logger) error {
	if cfg.IsManager() {
		m, err := manager.New(ctx, cfg, logger)
		if err != nil {
			return err
		}
		return m.Run(ctx)
	}
	return runWorker(ctx, cfg, logger)
}

// runWorker runs a worker node: it joins with the worker token on its
// first start, then keeps a session with a manager and runs its tasks.
// Until the containerd executor exists (issue 5), a worker runs its tasks
// with the simulated executor: they "run" in memory, which is what lets
// one machine stand in for thousands of nodes.
func runWorker(ctx context.Context, cfg config.Config, logger *slog.Logger) error {
	hostname, err := cfg.Node.Name()
	if err != nil {
		return err
	}
	platform := runtime.GOOS + "/" + runtime.GOARCH
	id, err := ca.LoadIdentity(cfg.CertDir())
	if errors.Is(err, sdk.ErrNotFound) {
		id, err = ca.Join(ctx, cfg.Join.Addrs, cfg.Join.Token, hostname, platform, cfg.CertDir())
		if err == nil && id.Role() != objectv1.NodeRole_NODE_ROLE_WORKER {
			return fmt.Errorf("join.token: joined as %s, but node.role is worker: use the worker token (shoal join-token worker)", id.Role())
		}
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.WorkerDir(), 0o700); err != nil {
		return err
	}
	a, err := agent.New(agent.Config{
		Identity: id,
		Managers: cfg.Join.Addrs,
		Description: &objectv1.NodeDescription{
			Hostname:      hostname,
			Platform:      platform,
			Resources:     machineResources(),
			EngineVersion: manager.Version,
			Executor:      "simulated",
		},
		Executor: simexec.New(simexec.Config{}),
		StateDir: cfg.WorkerDir(),
		Logger:   logger.With("part", "agent"),
	})
	if err != nil {
		return err
	}
	logger.Info("worker started", "node_id", id.NodeID(), "executor", "simulated")
	return a.Run(ctx)
}

// machineResources is what this machine offers to tasks: every CPU and all
// memory. Reservations are checked against it.
func machineResources() *objectv1.Resources {
	r := &objectv1.Resources{NanoCpus: int64(runtime.NumCPU()) * 1e9}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return r
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			if kb, err := strconv.ParseInt(fields[1], 10, 64); err == nil {
				r.MemoryBytes = kb << 10
			}
			break
		}
	}
	return r
}
