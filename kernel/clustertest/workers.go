package clustertest

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/shoalhq/shoal/kernel/agent"
	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/kernel/simexec"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// Worker is a simulated worker: a real agent (real gRPC, TLS, sessions,
// heartbeats) with an in-memory executor, running in the test's process.
type Worker struct {
	Name    string
	NodeID  string
	Manager string // the manager it was told to start with
	Agent   *agent.Agent
	Exec    *simexec.Executor

	cancel context.CancelFunc
	done   chan error
}

// WorkerOptions tune simulated workers.
type WorkerOptions struct {
	// StartDelay is how long a simulated task takes to start.
	StartDelay time.Duration
	// Logger receives the agents' logs; nil discards them.
	Logger *slog.Logger
	// HeartbeatObserver receives every heartbeat's round trip.
	HeartbeatObserver func(time.Duration)
	// Parallel bounds concurrent joins. Default 16.
	Parallel int
}

// StartWorkers joins n simulated workers to c with the worker token, each
// starting with manager i mod len(managers) (so most of them talk to
// followers), and runs their agents until the test ends or Stop.
func StartWorkers(tb testing.TB, c *Cluster, n int, opts WorkerOptions) []*Worker {
	tb.Helper()
	token := c.JoinToken(tb, "worker")
	dir := tb.TempDir()
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	workers := make([]*Worker, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	if opts.Parallel == 0 {
		opts.Parallel = 16
	}
	sem := make(chan struct{}, opts.Parallel) // joins in parallel, within reason
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			name := fmt.Sprintf("w%04d", i)
			addr := c.Managers[i%len(c.Managers)].APIAddr
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			id, err := ca.Join(ctx, []string{addr}, token, name, "linux/amd64", filepath.Join(dir, name))
			if err != nil {
				errs[i] = fmt.Errorf("%s: join: %w", name, err)
				return
			}
			exec := simexec.New(simexec.Config{StartDelay: opts.StartDelay})
			a, err := agent.New(agent.Config{
				Identity:          id,
				Managers:          []string{addr},
				Description:       simexec.NodeDescription(name),
				Executor:          exec,
				Logger:            logger.With("worker", name),
				HeartbeatObserver: opts.HeartbeatObserver,
			})
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", name, err)
				return
			}
			w := &Worker{Name: name, NodeID: id.NodeID(), Manager: addr, Agent: a, Exec: exec, done: make(chan error, 1)}
			runCtx, runCancel := context.WithCancel(context.Background())
			w.cancel = runCancel
			go func() { w.done <- a.Run(runCtx) }()
			workers[i] = w
		}()
	}
	wg.Wait()
	tb.Cleanup(func() {
		for _, w := range workers {
			if w != nil {
				w.Stop()
			}
		}
	})
	for _, err := range errs {
		if err != nil {
			tb.Fatal(err)
		}
	}
	return workers
}

// Stop stops the worker's agent, as if its machine died: its simulated
// tasks stay in its executor, no one hears from it again.
func (w *Worker) Stop() {
	if w.cancel == nil {
		return
	}
	w.cancel()
	w.cancel = nil
	<-w.done
}

// Starts counts how many times this worker started tasks.
func (w *Worker) Starts() int {
	tasks, err := w.Exec.List(context.Background())
	if err != nil {
		return -1
	}
	n := 0
	for _, t := range tasks {
		n += w.Exec.Starts(t.TaskID)
	}
	return n
}

// WaitReady waits until every worker of ws is committed ready, so that a
// service created next is spread over all of them rather than packed onto
// the first few to connect.
func (c *Cluster) WaitReady(tb testing.TB, ws []*Worker, timeout time.Duration) {
	tb.Helper()
	c.eventually(tb, timeout, func(ctx context.Context) error {
		client := c.Leader(tb, timeout).Client(tb)
		resp, err := client.ListNodes(ctx, &controlv1.ListNodesRequest{})
		if err != nil {
			return err
		}
		ready := map[string]bool{}
		for _, n := range resp.GetNodes() {
			ready[n.GetId()] = n.GetStatus().GetState() == objectv1.NodeState_NODE_STATE_READY
		}
		for _, w := range ws {
			if !ready[w.NodeID] {
				return fmt.Errorf("worker %s is not ready yet", w.Name)
			}
		}
		return nil
	})
}
