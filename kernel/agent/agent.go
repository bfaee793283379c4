package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoalhq/shoal/internal/retry"
	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
	cav1 "github.com/shoalhq/shoal/sdk/proto/shoal/ca/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// Config configures an Agent. Fields marked Default take their default
// when zero.
type Config struct {
	// Identity is the node's certificate (worker or manager role). Required.
	Identity *ca.Identity
	// Managers are the manager API addresses ("host:port") to start from:
	// the [join] addresses, or the local manager. Required unless StateDir
	// holds a manager list from an earlier run.
	Managers []string
	// Description is the node as it describes itself in Hello. Required.
	Description *objectv1.NodeDescription
	// Executor runs the tasks. Required.
	Executor executor.Executor
	// StateDir is where the agent keeps the last manager list it was given
	// (managers.json). Default: "", the list is kept in memory only.
	StateDir string
	// Logger receives the agent's logs. Default: logs are discarded.
	Logger *slog.Logger
	// NoRenewal leaves the renewal of the node's certificate to another
	// part of the node: on a node that is also a manager, kernel/manager
	// renews the same Identity, and two renewers would renew it twice.
	// Default: false, the agent renews the certificate through its manager.
	NoRenewal bool
	// OnSession, when set, is called with every session information the
	// managers send (at a session's start, and again when something in it
	// changed): the node's gossip learns its peers and key from it. It
	// runs on the session's receiving goroutine and must not block.
	// Default: nil.
	OnSession func(info *workerv1.SessionInfo)
	// OnStatus, when set, is called with every status the agent reports
	// for a task, in order, before it is sent: the node's DNS and load
	// balancing follow which tasks run and are healthy from it. It must
	// not block. Default: nil.
	OnStatus func(taskID string, st *objectv1.TaskStatus)

	// The knobs below are for tests and simulations; production nodes
	// keep the defaults.

	// BackoffBase and BackoffMax bound the wait between attempts to open a
	// session. Default: 100ms and 5s.
	BackoffBase, BackoffMax time.Duration
	// StatusBatchSize and StatusBatchInterval pace status reports: a
	// report goes when this many updates are pending, or when the oldest
	// has waited this long. Default: 100 and 100ms, the dispatcher's own
	// pacing.
	StatusBatchSize     int
	StatusBatchInterval time.Duration
	// MinHeartbeatTimeout is the least time the agent waits for a
	// heartbeat reply before it gives up on the manager (it waits 3
	// heartbeat periods otherwise), so that it waits out a leader election.
	// Default: 15s.
	MinHeartbeatTimeout time.Duration
	// HeartbeatObserver, when set, is called with the round-trip time of
	// every heartbeat (send to reply). Benchmarks use it.
	HeartbeatObserver func(rtt time.Duration)
}

// Defaults of the Config knobs.
const (
	DefaultBackoffBase         = 100 * time.Millisecond
	DefaultBackoffMax          = 5 * time.Second
	DefaultStatusBatchSize     = 100
	DefaultStatusBatchInterval = 100 * time.Millisecond
	DefaultMinHeartbeatTimeout = 15 * time.Second
)

// Agent is the worker side of a node: it holds a session with a manager,
// runs the tasks assigned to the node on the executor, and reports their
// status.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	managers *managerList
	conns    *connCache
	rep      *reporter
	tasks    *taskSet
	ran      atomic.Bool
	beatSent atomic.Int64 // when the last heartbeat went out (unix ns), for HeartbeatObserver

	mu        sync.Mutex
	manager   string // address of the current session's manager
	sessionID string
	sessions  int // sessions the managers confirmed
}

// Status is a snapshot of the agent, for tests and diagnostics.
type Status struct {
	// Manager is the address of the manager of the current session; ""
	// while disconnected.
	Manager string
	// SessionID is the current session's ID; "" while disconnected.
	SessionID string
	// Tasks is the number of tasks in the assignment set.
	Tasks int
	// Reconnects counts the sessions opened after the first one.
	Reconnects int
}

// New checks cfg and returns an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	var fe sdk.FieldErrors
	if cfg.Identity == nil {
		fe.Add("identity", "is required")
	}
	if cfg.Executor == nil {
		fe.Add("executor", "is required")
	}
	if cfg.Description == nil {
		fe.Add("description", "is required")
	}
	for i, addr := range cfg.Managers {
		if host, port, err := net.SplitHostPort(addr); err != nil || host == "" || port == "" {
			fe.Add(fmt.Sprintf("managers[%d]", i), "must be host:port, got %q", addr)
		}
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{
		{"backoff_base", cfg.BackoffBase},
		{"backoff_max", cfg.BackoffMax},
		{"status_batch_interval", cfg.StatusBatchInterval},
		{"min_heartbeat_timeout", cfg.MinHeartbeatTimeout},
	} {
		if d.v < 0 {
			fe.Add(d.field, "must not be negative, got %s", d.v)
		}
	}
	if cfg.StatusBatchSize < 0 {
		fe.Add("status_batch_size", "must not be negative, got %d", cfg.StatusBatchSize)
	}
	if err := fe.Err(); err != nil {
		return nil, fmt.Errorf("new agent: %w", err)
	}
	setDefault(&cfg.BackoffBase, DefaultBackoffBase)
	setDefault(&cfg.BackoffMax, DefaultBackoffMax)
	setDefault(&cfg.StatusBatchSize, DefaultStatusBatchSize)
	setDefault(&cfg.StatusBatchInterval, DefaultStatusBatchInterval)
	setDefault(&cfg.MinHeartbeatTimeout, DefaultMinHeartbeatTimeout)
	if cfg.BackoffMax < cfg.BackoffBase {
		return nil, fmt.Errorf("new agent: backoff_max %s is below backoff_base %s: %w", cfg.BackoffMax, cfg.BackoffBase, sdk.ErrInvalidArgument)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg.Logger = logger
	logger = logger.With("node_id", cfg.Identity.NodeID())
	managers, err := newManagerList(cfg.Managers, cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("new agent: %w", err)
	}
	rep := newReporter(cfg.StatusBatchSize, cfg.StatusBatchInterval)
	rep.onStatus = cfg.OnStatus
	return &Agent{
		cfg:      cfg,
		log:      logger,
		managers: managers,
		conns:    newConnCache(cfg.Identity),
		rep:      rep,
		tasks:    newTaskSet(cfg.Identity.NodeID(), cfg.Executor, rep, logger),
	}, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Run runs the agent until ctx ends, and returns nil then. It returns an
// error when the node cannot go on: its certificate cannot be renewed
// (removed from the cluster, or expired). Either way the tasks keep
// running: the executor owns them, and the next Run adopts them. Run may
// be called once.
func (a *Agent) Run(ctx context.Context) error {
	if !a.ran.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	defer a.conns.closeAll()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	held, ok := a.listExecutor(ctx)
	if !ok {
		return nil
	}
	a.tasks.adopt(held)
	a.log.Info("agent started", "executor_tasks", len(held))

	var wg sync.WaitGroup
	var renewErr error // written before cancel, read after wg.Wait
	wg.Go(func() { a.tasks.run(ctx) })
	if !a.cfg.NoRenewal {
		wg.Go(func() {
			// The renewer logs node_id itself: give it the bare logger.
			renewErr = ca.NewRenewer(a.cfg.Identity, a.caClient, a.cfg.Logger.With("part", "ca")).Run(ctx)
			if renewErr != nil {
				cancel()
			}
		})
	}
	err := a.connectLoop(ctx)
	cancel()
	wg.Wait()
	if err = errors.Join(err, renewErr); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.log.Info("agent stopped")
	return nil
}

// listExecutor returns what the executor holds, retrying until it answers
// or ctx ends: assignments are not taken before the agent knows which tasks
// already run, or it would start them twice.
func (a *Agent) listExecutor(ctx context.Context) ([]executor.TaskInfo, bool) {
	bo := backoff{base: a.cfg.BackoffBase, max: a.cfg.BackoffMax, randN: rand.Int64N}
	for {
		held, err := a.cfg.Executor.List(ctx)
		if err == nil {
			return held, true
		}
		if ctx.Err() != nil {
			return nil, false
		}
		wait := bo.next()
		a.log.Warn("cannot list the executor's tasks", "error", err, "retry_in", wait)
		if !retry.Sleep(ctx, wait) {
			return nil, false
		}
	}
}

// caClient is the certificate renewer's way to a manager: the current
// session's, or one picked by weight while disconnected.
func (a *Agent) caClient(context.Context) (cav1.NodeCAClient, error) {
	a.mu.Lock()
	addr := a.manager
	a.mu.Unlock()
	if addr == "" {
		var ok bool
		if addr, ok = a.managers.pick(""); !ok {
			return nil, fmt.Errorf("no manager to connect to: %w", sdk.ErrUnavailable)
		}
	}
	conn, err := a.conns.get(addr)
	if err != nil {
		return nil, err
	}
	return cav1.NewNodeCAClient(conn), nil
}

// sessionUp records a session the manager confirmed (or confirmed again,
// with a new manager list).
func (a *Agent) sessionUp(addr string, info *workerv1.SessionInfo) {
	if info.GetNodeId() != "" && info.GetNodeId() != a.cfg.Identity.NodeID() {
		a.log.Warn("manager bound the session to another node", "manager", addr, "session_node_id", info.GetNodeId())
	}
	a.mu.Lock()
	first := a.manager == ""
	a.manager, a.sessionID = addr, info.GetSessionId()
	if first {
		a.sessions++
	}
	a.mu.Unlock()
	if first {
		a.log.Info("session with manager opened", "manager", addr, "session_id", info.GetSessionId())
	}
	if a.cfg.OnSession != nil {
		a.cfg.OnSession(info)
	}
	if len(info.GetManagers()) == 0 {
		return // nothing to learn: keep the list
	}
	changed, err := a.managers.update(info.GetManagers())
	if err != nil {
		a.log.Warn("updating the manager list", "manager", addr, "error", err)
	}
	if changed {
		keep := append(a.managers.addrs(), addr)
		a.conns.prune(keep)
		a.log.Info("manager list changed", "managers", len(keep)-1)
	}
}

// sessionDown records the end of the current session.
func (a *Agent) sessionDown() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.manager, a.sessionID = "", ""
}

// Status returns a snapshot of the agent.
func (a *Agent) Status() Status {
	a.mu.Lock()
	st := Status{Manager: a.manager, SessionID: a.sessionID, Reconnects: max(a.sessions-1, 0)}
	a.mu.Unlock()
	st.Tasks = a.tasks.len()
	return st
}
