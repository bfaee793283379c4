// Package node runs what a node's config asks for: a manager and a worker
// (role "manager"), or a worker alone (role "worker"). A worker is the agent
// with its executor: the plugin [plugins.executor] names (by default the
// bundled executor-containerd, next to the shoal binary), or the simulated
// executor for path = "simulated". A worker that runs real tasks also
// gossips with the other workers and keeps the host's routes to their tasks
// (netsync.go). It is the agent daemon's wiring; cmd/shoal only parses flags
// and calls Run.
package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoalhq/shoal/kernel/agent"
	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/kernel/config"
	"github.com/shoalhq/shoal/kernel/containerd"
	"github.com/shoalhq/shoal/kernel/dns"
	"github.com/shoalhq/shoal/kernel/lb"
	"github.com/shoalhq/shoal/kernel/manager"
	"github.com/shoalhq/shoal/kernel/tasknet"
	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// Run runs the node until ctx ends.
func Run(ctx context.Context, cfg config.Config, logger *slog.Logger) error {
	if cfg.IsManager() {
		return runManager(ctx, cfg, logger)
	}
	return runWorker(ctx, cfg, logger)
}

// runManager runs a manager and, beside it, the node's own worker: an agent
// that holds a session with this very manager under the manager's
// certificate, so that the node takes tasks too (drain it to keep tasks
// off). The manager renews the certificate; the agent only uses it. If
// either part fails, the other is stopped and the error returned.
func runManager(ctx context.Context, cfg config.Config, logger *slog.Logger) error {
	m, err := manager.New(cfg, logger)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	mdone := make(chan error, 1)
	go func() { mdone <- m.Run(ctx) }()
	// The worker uses the manager's certificate, which Run loads.
	select {
	case <-m.Ready():
	case err := <-mdone:
		return err
	}
	if cfg.Plugins[sdk.KindExecutor].Path == config.NoExecutor {
		logger.Info("this manager runs no worker: [plugins.executor] path is \"none\"", "node_id", m.NodeID())
		return <-mdone
	}
	w, err := newWorker(cfg, m.Identity(), []string{m.APIAddr()}, true, logger)
	switch {
	case errors.Is(err, errNoBundledExecutor):
		// A manager can serve without a worker: it then takes no tasks,
		// as if drained. Say why, and run.
		logger.Warn("this manager runs no worker and takes no tasks", "node_id", m.NodeID(), "reason", err,
			"fix", `install the bundled executor next to shoal, or set [plugins.executor] path (path = "simulated" for simulated tasks)`)
		return <-mdone
	case err != nil:
		cancel()
		return errors.Join(err, <-mdone)
	}
	var wg sync.WaitGroup
	var werr error
	wg.Go(func() {
		werr = w.run(ctx)
		if werr != nil {
			cancel()
		}
	})
	merr := <-mdone
	cancel()
	wg.Wait()
	if werr != nil {
		werr = fmt.Errorf("worker: %w", werr)
	}
	return errors.Join(merr, werr)
}

// runWorker runs a worker node: it joins with the worker token on its
// first start, then keeps a session with a manager and runs its tasks.
func runWorker(ctx context.Context, cfg config.Config, logger *slog.Logger) error {
	hostname, err := cfg.Node.Name()
	if err != nil {
		return err
	}
	if cfg.Plugins[sdk.KindExecutor].Path == config.NoExecutor {
		return fmt.Errorf(`plugins.executor.path: a worker needs an executor, got "none"`)
	}
	id, err := ca.LoadIdentity(cfg.CertDir())
	if errors.Is(err, sdk.ErrNotFound) {
		id, err = ca.Join(ctx, cfg.Join.Addrs, cfg.Join.Token, hostname, platform(), cfg.CertDir())
		if err == nil && id.Role() != objectv1.NodeRole_NODE_ROLE_WORKER {
			return fmt.Errorf("join.token: joined as %s, but node.role is worker: use the worker token (shoal join-token worker)", id.Role())
		}
	}
	if err != nil {
		return err
	}
	w, err := newWorker(cfg, id, cfg.Join.Addrs, false, logger)
	if err != nil {
		return err
	}
	return w.run(ctx)
}

// nodeContainerd is the containerd the node's executor uses: the socket
// [containerd] address names, or else the node's own containerd, which the
// worker supervises (kernel/containerd) under data_dir/containerd. The
// node runs its own only for the bundled executor-containerd (path empty,
// or a binary of that name): another executor may not use containerd at
// all, and is told the address only when the operator sets it.
func nodeContainerd(cfg config.Config, logger *slog.Logger) (string, *containerd.Supervisor, error) {
	if cfg.Containerd.Address != "" {
		return cfg.Containerd.Address, nil, nil
	}
	p := cfg.Plugins[sdk.KindExecutor].Path
	if p != "" && filepath.Base(p) != bundledExecutor {
		return "", nil, nil
	}
	sup, err := containerd.New(containerd.Config{Dir: containerd.NodeDir(cfg.Node.DataDir), Logger: logger.With("part", "containerd")})
	if err != nil {
		return "", nil, err
	}
	return sup.Address(), sup, nil
}

// worker is a node's worker side: the agent and its executor.
type worker struct {
	agent *agent.Agent
	exec  *nodeExecutor
	// net is the gossip with other workers and the routes to their
	// tasks; nil for simulated tasks, which have no network.
	net *netSync
	// ctrd is the node's own containerd, when it runs one.
	ctrd *containerd.Supervisor
	// dns answers the node's tasks; nil without networks or when it
	// could not start.
	dns *dns.Server
	log *slog.Logger
}

// newWorker prepares the worker of the node id names. managers are the
// addresses to start from; noRenewal leaves the certificate to the
// manager of the same node.
func newWorker(cfg config.Config, id *ca.Identity, managers []string, noRenewal bool, logger *slog.Logger) (*worker, error) {
	hostname, err := cfg.Node.Name()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.WorkerDir(), 0o700); err != nil {
		return nil, err
	}
	node := executor.NodeInfo{NodeID: id.NodeID()}
	var ctrd *containerd.Supervisor
	if p := cfg.Plugins[sdk.KindExecutor].Path; p != config.SimulatedExecutor {
		node.ContainerdAddress, ctrd, err = nodeContainerd(cfg, logger)
		if err != nil {
			return nil, err
		}
	}
	exec, err := newExecutor(cfg, node, logger)
	if err != nil {
		return nil, err
	}
	desc := &objectv1.NodeDescription{
		Hostname:      hostname,
		Platform:      platform(),
		Resources:     machineResources(),
		EngineVersion: manager.Version,
		Executor:      exec.name,
	}
	acfg := agent.Config{
		Identity:    id,
		Managers:    managers,
		Description: desc,
		Executor:    exec,
		StateDir:    cfg.WorkerDir(),
		Logger:      logger.With("part", "agent"),
		NoRenewal:   noRenewal,
	}
	var ns *netSync
	if exec.name != config.SimulatedExecutor {
		ns, err = newNetSync(cfg.Gossip, id.NodeID(), cfg.WorkerDir(), tasknet.NewRouter(logger.With("part", "tasknet")), logger)
		if err != nil {
			return nil, err
		}
		desc.GossipAddr = ns.Addr()
		acfg.Executor = &netExecutor{Executor: exec, ns: ns}
		acfg.OnSession = ns.onSession
		acfg.OnStatus = ns.statusReported
	}
	w := &worker{exec: exec, net: ns, ctrd: ctrd, log: logger.With("node_id", id.NodeID())}
	if ns != nil {
		// DNS and load balancing are the node's way for tasks to find
		// services; a node that cannot start them (another DNS server
		// holds a gateway's port 53, no nftables) still runs its tasks,
		// which then reach each other by address only: logged, not fatal.
		ix := dns.NewIndex()
		var d dnsListener
		if srv, err := dns.New(dns.Config{}, ix, logger.With("part", "dns")); err != nil {
			logger.Warn("no DNS for tasks: services will not resolve by name", "error", err)
		} else {
			w.dns, d = srv, srv
		}
		var b balancer
		if bal, err := lb.New(lb.Config{Table: cfg.Services.NftablesTable}, logger.With("part", "lb")); err != nil {
			logger.Warn("no load balancing: service VIPs and the routing mesh will not answer", "error", err)
		} else {
			b = bal
		}
		ns.view = newServiceView(ix, d, b, logger.With("part", "services"))
	}
	a, err := agent.New(acfg)
	if err != nil {
		if w.dns != nil {
			w.dns.Close()
		}
		return nil, err
	}
	w.agent = a
	return w, nil
}

// run runs the executor plugin (if any) and the agent until ctx ends or
// either fails; the tasks keep running either way.
func (w *worker) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var herr, cerr, nerr error
	if w.ctrd != nil {
		// The node's own containerd first: the executor plugin connects
		// to it when it starts. Containers outlive it (their shims keep
		// them), and a restarted containerd finds them again.
		wg.Go(func() {
			cerr = w.ctrd.Run(ctx)
			if errors.Is(cerr, containerd.ErrAlreadyRunning) {
				w.log.Warn("a containerd already answers on the node's socket; using it", "address", w.ctrd.Address())
				cerr = nil
				return
			}
			if cerr != nil {
				cancel()
			}
		})
		rctx, rcancel := context.WithTimeout(ctx, 90*time.Second)
		err := w.ctrd.Ready(rctx)
		rcancel()
		if err != nil && ctx.Err() == nil && cerr == nil {
			w.log.Warn("the node's containerd is not answering yet; starting the executor anyway", "address", w.ctrd.Address(), "err", err)
		}
	}
	if w.exec.host != nil {
		wg.Go(func() {
			if herr = w.exec.host.Run(ctx); herr != nil {
				cancel()
			}
		})
	}
	if w.dns != nil {
		wg.Go(func() {
			if err := w.dns.Run(ctx); err != nil && ctx.Err() == nil {
				w.log.Warn("DNS for tasks stopped", "error", err)
			}
		})
	}
	if w.net != nil {
		wg.Go(func() {
			if nerr = w.net.run(ctx, w.exec); nerr != nil {
				cancel()
			}
		})
	}
	w.log.Info("worker started", "executor", w.exec.name)
	aerr := w.agent.Run(ctx)
	cancel()
	wg.Wait()
	if herr != nil {
		herr = fmt.Errorf("executor plugin: %w", herr)
	}
	if cerr != nil {
		cerr = fmt.Errorf("containerd: %w", cerr)
	}
	if nerr != nil {
		nerr = fmt.Errorf("gossip: %w", nerr)
	}
	return errors.Join(aerr, herr, cerr, nerr)
}

func platform() string { return runtime.GOOS + "/" + runtime.GOARCH }

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
