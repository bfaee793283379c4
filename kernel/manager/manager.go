// Package manager wires a manager node by hand: the Raft store, the CA, the
// control API (on TLS and on the local unix socket), Raft membership, and
// the leader-only stages, which run under one context that is cancelled
// when this manager loses leadership.
package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/shoalhq/shoal/kernel/allocator"
	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/kernel/config"
	"github.com/shoalhq/shoal/kernel/controlapi"
	"github.com/shoalhq/shoal/kernel/dashboard"
	"github.com/shoalhq/shoal/kernel/dispatch"
	"github.com/shoalhq/shoal/kernel/events"
	"github.com/shoalhq/shoal/kernel/orchestrator"
	"github.com/shoalhq/shoal/kernel/placement"
	"github.com/shoalhq/shoal/kernel/pluginhost"
	"github.com/shoalhq/shoal/kernel/presence"
	"github.com/shoalhq/shoal/kernel/raftstore"
	"github.com/shoalhq/shoal/kernel/secrets"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/ipam"
	cav1 "github.com/shoalhq/shoal/sdk/proto/shoal/ca/v1"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
	"github.com/shoalhq/shoal/sdk/scheduler"
)

// Manager is one manager node.
type Manager struct {
	cfg   config.Config
	log   *slog.Logger
	ident *identity
	// secrets holds the cluster's secrets key once this manager knows it.
	secrets *secrets.Holder
	apiAddr string // advertised
	st      *state.Store
	raft    *raftstore.Node
	leader  *leaderDialer
	api     *grpc.Server
	local   *grpc.Server
	apiLis  net.Listener
	sockLis net.Listener
	metLis  net.Listener // nil when metrics are off
	// dashboardToken is the dashboard's admin token; "" for none.
	dashboardToken string
	workers *dispatch.Service
	hub     *events.Hub // the event stream, on every manager
	sched   *pluginhost.Host[scheduler.Scheduler]
	ipam    *pluginhost.Host[ipam.IPAM]
	// statusWritten counts worker status reports committed by this
	// manager's dispatchers.
	statusWritten atomic.Uint64
	// stageRestarts counts leader stages restarted after a failure.
	stageRestarts atomic.Uint64
}

// Version is the shoal version managers record on their node.
var Version = "dev"

// New prepares a manager from the node's config: it loads or obtains the
// node's certificate (bootstrapping a cluster or joining one), opens the
// Raft state and binds its listeners. Run serves.
func New(ctx context.Context, cfg config.Config, logger *slog.Logger) (*Manager, error) {
	ident, err := loadIdentity(ctx, cfg, time.Now())
	if err != nil {
		return nil, err
	}
	apiAddr, err := cfg.Manager.AdvertiseAPI()
	if err != nil {
		return nil, fmt.Errorf("manager.advertise_addr: %w", err)
	}
	raftAddr, err := cfg.Manager.AdvertiseRaft()
	if err != nil {
		return nil, fmt.Errorf("manager.raft_advertise_addr: %w", err)
	}
	m := &Manager{cfg: cfg, log: logger.With("node_id", ident.id.NodeID()), ident: ident, apiAddr: apiAddr, st: state.New(), secrets: &secrets.Holder{}}
	if err := m.loadSecretsKey(ident.bootstrap != nil); err != nil {
		return nil, err
	}
	serverTLS, clientTLS := ident.id.MutualTLS()
	m.raft, err = raftstore.New(raftstore.Config{
		NodeID:             ident.id.NodeID(),
		Dir:                raftDir(cfg),
		BindAddr:           cfg.Manager.RaftListenAddr,
		AdvertiseAddr:      raftAddr,
		ServerTLS:          serverTLS,
		ClientTLS:          clientTLS,
		Bootstrap:          ident.bootstrap != nil,
		HeartbeatTimeout:   cfg.Raft.HeartbeatTimeout.Duration,
		ElectionTimeout:    cfg.Raft.ElectionTimeout.Duration,
		LeaderLeaseTimeout: cfg.Raft.LeaderLeaseTimeout.Duration,
		CommitTimeout:      cfg.Raft.CommitTimeout.Duration,
		SnapshotThreshold:  uint64(cfg.Raft.SnapshotThreshold),
		SnapshotInterval:   cfg.Raft.SnapshotInterval.Duration,
		TrailingLogs:       uint64(cfg.Raft.TrailingLogs),
		MaxAppendEntries:   cfg.Raft.MaxAppendEntries,
		Logger:             m.log.With("part", "raft"),
	}, m.st)
	if err != nil {
		return nil, err
	}
	m.leader = newLeaderDialer(m.raft, m.st, ident.id)

	m.apiLis, err = net.Listen("tcp", cfg.Manager.ListenAddr)
	if err != nil {
		m.closeEarly()
		return nil, fmt.Errorf("manager.listen_addr: %w", err)
	}
	m.sockLis, err = listenUnix(cfg.Manager.ControlSocket)
	if err != nil {
		m.closeEarly()
		return nil, fmt.Errorf("manager.control_socket: %w", err)
	}

	if cfg.Metrics.ListenAddr != "" {
		m.metLis, err = net.Listen("tcp", cfg.Metrics.ListenAddr)
		if err != nil {
			m.closeEarly()
			return nil, fmt.Errorf("metrics.listen_addr: %w", err)
		}
		if cfg.Metrics.DashboardTokenFile != "" {
			if m.dashboardToken, err = dashboard.LoadToken(cfg.Metrics.DashboardTokenFile); err != nil {
				m.closeEarly()
				return nil, err
			}
		}
	}

	m.sched, err = newSchedulerHost(cfg, m.log)
	if err != nil {
		m.closeEarly()
		return nil, err
	}
	m.ipam, err = newIPAMHost(cfg, m.log)
	if err != nil {
		m.closeEarly()
		return nil, err
	}
	m.workers = dispatch.NewService(m.leader, m.log.With("part", "dispatch"))

	m.hub = events.New(events.Config{}, m.st, m.log.With("part", "events"))
	eventsServer := events.NewServer(m.hub, m.log.With("part", "events"))
	control := controlapi.NewServer(m.raft, m.st, m.leader, m.log.With("part", "controlapi"), controlapi.WithLogs(m.workers), controlapi.WithExecs(m.workers), controlapi.WithVolumes(m.workers), controlapi.WithSecrets(m.secrets))
	caServer := &nodeCA{inner: ca.NewServer(&registrar{raft: m.raft, st: m.st}, m.log.With("part", "ca")), raft: m.raft, leader: m.leader}
	member := &membership{raft: m.raft, st: m.st, leader: m.leader, log: m.log.With("part", "membership"), secrets: m.secrets,
		saveKey: func(key []byte) error { return secrets.Save(secretsKeyFile(cfg), key) }}

	policy := apiPolicy()
	m.api = grpc.NewServer(controlapi.ServerOptions(
		grpc.Creds(credentials.NewTLS(ident.id.ServerTLS())),
		grpc.ChainUnaryInterceptor(policy.UnaryInterceptor(), control.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(policy.StreamInterceptor()),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)...)
	controlv1.RegisterControlServer(m.api, control)
	controlv1.RegisterEventsServer(m.api, eventsServer)
	cav1.RegisterNodeCAServer(m.api, caServer)
	raftv1.RegisterMembershipServer(m.api, member)
	workerv1.RegisterDispatcherServer(m.api, m.workers)
	workerv1.RegisterRelayServer(m.api, m.workers)
	backup := &backupServer{raft: m.raft, leader: m.leader, log: m.log.With("part", "backup")}
	controlv1.RegisterBackupServer(m.api, backup)

	// The unix socket is root's (0600): whoever can open it is the local
	// administrator, so it serves the control API without certificates.
	m.local = grpc.NewServer(controlapi.ServerOptions(grpc.ChainUnaryInterceptor(control.UnaryInterceptor()))...)
	controlv1.RegisterControlServer(m.local, control)
	controlv1.RegisterBackupServer(m.local, backup)
	controlv1.RegisterEventsServer(m.local, eventsServer)
	return m, nil
}

// apiPolicy says which certificate roles may call each method on the TLS
// port. A method not listed is refused.
func apiPolicy() ca.Policy {
	manager := []objectv1.NodeRole{objectv1.NodeRole_NODE_ROLE_MANAGER}
	p := ca.Policy{}
	for _, m := range controlv1.Control_ServiceDesc.Methods {
		p["/"+controlv1.Control_ServiceDesc.ServiceName+"/"+m.MethodName] = manager
	}
	for _, m := range controlv1.Control_ServiceDesc.Streams {
		p["/"+controlv1.Control_ServiceDesc.ServiceName+"/"+m.StreamName] = manager
	}
	p[controlv1.Events_Events_FullMethodName] = manager
	for _, m := range controlv1.Backup_ServiceDesc.Streams {
		p["/"+controlv1.Backup_ServiceDesc.ServiceName+"/"+m.StreamName] = manager
	}
	for _, m := range raftv1.Membership_ServiceDesc.Methods {
		p["/"+raftv1.Membership_ServiceDesc.ServiceName+"/"+m.MethodName] = manager
	}
	nodes := []objectv1.NodeRole{objectv1.NodeRole_NODE_ROLE_WORKER, objectv1.NodeRole_NODE_ROLE_MANAGER}
	p[workerv1.Dispatcher_Connect_FullMethodName] = nodes
	p[workerv1.Relay_Relay_FullMethodName] = manager
	p[workerv1.Dispatcher_Exec_FullMethodName] = nodes
	p[workerv1.Relay_RelayExec_FullMethodName] = manager
	p[cav1.NodeCA_IssueNodeCertificate_FullMethodName] = nil // the token is the credential
	p[cav1.NodeCA_RenewNodeCertificate_FullMethodName] = []objectv1.NodeRole{objectv1.NodeRole_NODE_ROLE_WORKER, objectv1.NodeRole_NODE_ROLE_MANAGER}
	return p
}

func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		lis.Close()
		return nil, err
	}
	return lis, nil
}

func (m *Manager) closeEarly() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m.raft.Run(ctx)
	if m.apiLis != nil {
		m.apiLis.Close()
	}
	if m.sockLis != nil {
		m.sockLis.Close()
	}
	if m.metLis != nil {
		m.metLis.Close()
	}
}

// NodeID is this manager's node ID.
func (m *Manager) NodeID() string { return m.ident.id.NodeID() }

// Raft exposes the Raft node, for tests and benchmarks.
func (m *Manager) Raft() *raftstore.Node { return m.raft }

// Store exposes the state store, for tests and benchmarks.
func (m *Manager) Store() *state.Store { return m.st }

// APIAddr is the advertised API address.
func (m *Manager) APIAddr() string { return m.apiAddr }

// Identity is the node's certificate.
func (m *Manager) Identity() *ca.Identity { return m.ident.id }

// Run serves until ctx ends or a part fails. On the way out it stops the
// API, then the leader stages, then Raft (handing leadership over first).
func (m *Manager) Run(ctx context.Context) error {
	partsCtx, stopParts := context.WithCancel(ctx)
	defer stopParts()
	raftCtx, stopRaft := context.WithCancel(context.Background())
	raftDone := make(chan error, 1)
	leadership := m.raft.Leadership()
	go func() { raftDone <- m.raft.Run(raftCtx) }()

	errc := make(chan error, 8)
	var (
		wg        sync.WaitGroup
		runningMu sync.Mutex
		running   = map[string]bool{} // the parts that have not returned
	)
	run := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		runningMu.Lock()
		running[name] = true
		runningMu.Unlock()
		go func() {
			defer wg.Done()
			defer func() {
				runningMu.Lock()
				delete(running, name)
				runningMu.Unlock()
			}()
			if err := fn(partsCtx); err != nil && partsCtx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	run("events", m.hub.Run)
	run("api", func(ctx context.Context) error { return serve(ctx, m.api, m.apiLis) })
	run("control socket", func(ctx context.Context) error { return serve(ctx, m.local, m.sockLis) })
	if m.metLis != nil {
		run("metrics", func(ctx context.Context) error { return m.serveMetrics(ctx, m.metLis) })
	}
	run("leader stages", func(ctx context.Context) error { return m.leadLoop(ctx, leadership) })
	run("worker relay", m.workers.RunRelay)
	// The scheduler plugin runs on every manager, so that a new leader finds
	// it started.
	run("scheduler plugin", m.sched.Run)
	// So does the IPAM plugin; a new leader restores it from the store
	// before its first request (see kernel/allocator).
	run("ipam plugin", m.ipam.Run)
	run("registration", m.registerLoop)
	run("manager list", m.peersLoop)
	run("certificate renewal", func(ctx context.Context) error {
		return ca.NewRenewer(m.ident.id, func(ctx context.Context) (cav1.NodeCAClient, error) {
			conn, err := m.anyManagerConn(ctx)
			if err != nil {
				return nil, err
			}
			return cav1.NewNodeCAClient(conn), nil
		}, m.log.With("part", "ca")).Run(ctx)
	})
	m.log.Info("manager started", "api_addr", m.apiAddr, "control_socket", m.cfg.Manager.ControlSocket)

	var err error
	raftStopped := false
	select {
	case <-ctx.Done():
	case err = <-errc:
		m.log.Error("manager part failed; stopping", "error", err)
	case err = <-raftDone:
		raftStopped = true
		err = fmt.Errorf("raft stopped: %w", err)
	}
	// A manager stops in a bounded time whatever its peers do: the parts
	// get partsStopWait (the API's drain is 5 s of it), and one that is
	// still waiting then (on a peer that does not answer, say) is named
	// and left behind; raft bounds its own shutdown (raftstore.Node.Run).
	stopParts()
	partsDone := make(chan struct{})
	go func() { wg.Wait(); close(partsDone) }()
	t := time.NewTimer(partsStopWait)
	select {
	case <-partsDone:
	case <-t.C:
		runningMu.Lock()
		names := slices.Sorted(maps.Keys(running))
		runningMu.Unlock()
		m.log.Error("manager parts did not stop in time; stopping raft anyway", "parts", names, "waited", partsStopWait)
	}
	t.Stop()
	m.leader.Close()
	stopRaft()
	if !raftStopped {
		if rerr := <-raftDone; err == nil && rerr != nil {
			err = rerr
		}
	}
	m.log.Info("manager stopped")
	return err
}

// serve runs srv on lis until ctx ends, then drains it for up to 5 s.
func serve(ctx context.Context, srv *grpc.Server, lis net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		srv.Stop()
	}
	<-errc
	return nil
}

// leadLoop runs the leader stages while this manager leads. Stages that
// stop while it still leads (one failed: a state watch that overflowed, a
// write that failed for good) are started again after a backoff that grows
// with each failure in a row; after maxStageFailures in a row the manager
// hands leadership to another manager if there is one, and keeps
// restarting them if not. A leader never runs without its stages.
func (m *Manager) leadLoop(ctx context.Context, leadership <-chan bool) error {
	var (
		stop    context.CancelFunc
		done    chan error
		started time.Time
		leads   bool
		// failures counts stage runs in a row that failed soon after
		// they started.
		failures int
		// restart fires when stopped stages are due to start again.
		restart      <-chan time.Time
		restartTimer *time.Timer
	)
	startStages := func() {
		sctx, cancel := context.WithCancel(ctx)
		stop, done, started = cancel, make(chan error, 1), time.Now()
		go func() { done <- m.runLeaderStages(sctx) }()
	}
	stopStages := func() error {
		if stop == nil {
			return nil
		}
		stop()
		err := <-done
		stop, done = nil, nil
		return err
	}
	scheduleRestart := func(after time.Duration) {
		restartTimer = time.NewTimer(after)
		restart = restartTimer.C
	}
	cancelRestart := func() {
		if restartTimer != nil {
			restartTimer.Stop()
			restartTimer, restart = nil, nil
		}
	}
	defer func() {
		cancelRestart()
		stopStages()
	}()
	for {
		var stageErr <-chan error = done
		select {
		case <-ctx.Done():
			return nil
		case l, ok := <-leadership:
			if !ok {
				return nil
			}
			switch {
			case l && !leads:
				m.log.Info("became leader; starting leader stages")
				failures = 0
				cancelRestart()
				if stop == nil {
					startStages()
				}
			case l && stop == nil && restart == nil:
				// Still leading, as far as this channel tells, yet nothing
				// runs: leadership flickered while the stages stopped.
				startStages()
			case !l && leads:
				m.log.Info("lost leadership; stopping leader stages")
				cancelRestart()
				if err := stopStages(); err != nil && !isChurn(err) {
					m.log.Warn("leader stages failed while leadership was lost", "error", err)
				}
			}
			leads = l
		case err := <-stageErr:
			stop, done = nil, nil
			if !leads || ctx.Err() != nil {
				continue
			}
			if err == nil {
				err = errors.New("leader stages stopped on their own")
			}
			if !m.raft.IsLeader() {
				// Leadership is going; the channel says so next. Look again
				// shortly in case it came back unnoticed.
				m.log.Info("leader stages stopped", "reason", err)
				scheduleRestart(stageRecheck)
				continue
			}
			if time.Since(started) >= stageHealthyRun {
				failures = 0
			}
			failures++
			m.stageRestarts.Add(1)
			backoff := stageBackoff(failures)
			if failures < maxStageFailures {
				m.log.Warn("leader stage failed; restarting the leader stages", "error", err, "failures", failures, "restart_in", backoff)
			} else if serr := m.raft.StepDown(stepDownWait); serr != nil {
				m.log.Warn("leader stages keep failing and leadership could not be handed over; restarting them",
					"error", err, "failures", failures, "step_down_error", serr, "restart_in", backoff)
			} else {
				m.log.Warn("leader stages keep failing; handed leadership to another manager", "error", err, "failures", failures)
			}
			scheduleRestart(backoff)
		case <-restart:
			restartTimer, restart = nil, nil
			if !m.raft.IsLeader() {
				scheduleRestart(stageRecheck)
				continue
			}
			m.log.Info("restarting leader stages")
			startStages()
		}
	}
}

// isChurn reports errors that come from losing leadership or quorum, which
// end the leader stages without failing the manager.
func isChurn(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, sdk.ErrUnavailable) || errors.Is(err, raftstore.ErrNotLeader)
}

// runLeaderStages makes sure the cluster object and this manager's record
// exist, then runs every leader-only stage until ctx ends or one fails.
func (m *Manager) runLeaderStages(ctx context.Context) error {
	// raft's barrier takes a timeout, not ctx: stopping the stages must
	// not wait for it.
	barrier := make(chan error, 1)
	go func() { barrier <- m.raft.Barrier(ctx) }()
	select {
	case err := <-barrier:
		if err != nil {
			return fmt.Errorf("barrier: %w: %w", err, sdk.ErrUnavailable)
		}
	case <-ctx.Done():
		return nil
	}
	if err := m.ensureCluster(ctx); err != nil {
		return err
	}
	if err := m.registerSelf(ctx); err != nil {
		return err
	}
	// A leader of a cluster from before secrets holds no key: it makes one
	// while no secret is sealed (leaderSecretsKey), and hands it to the
	// other managers as they ask (registerLoop). Without one, only secrets
	// are unavailable.
	if _, err := leaderSecretsKey(m.secrets, m.st, func(key []byte) error { return secrets.Save(secretsKeyFile(m.cfg), key) }); err != nil {
		m.log.Error("no secrets key", "error", err)
	}
	tracker := presence.NewTracker(presence.Config{
		Period: m.heartbeatPeriod,
		Logger: m.log.With("part", "presence"),
	})
	d := dispatch.New(m.raft, m.st, tracker, dispatch.Config{
		Logger:        m.log.With("part", "dispatch"),
		StatusWritten: func(n int) { m.statusWritten.Add(uint64(n)) },
		Secrets:       m.secrets,
	})
	stages := []struct {
		name string
		run  func(context.Context) error
	}{
		{"orchestrator", orchestrator.New(m.raft, m.st, m.log.With("part", "orchestrator")).Run},
		{"allocator", allocator.New(m.raft, m.st, m.ipam, m.log.With("part", "allocator")).Run},
		{"placement", placement.New(m.raft, m.st, m.sched, m.log.With("part", "placement")).Run},
		{"dispatcher", d.Run},
		{"dispatcher service", func(ctx context.Context) error { m.workers.Serve(ctx, d); return nil }},
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(stages))
	for _, st := range stages {
		go func() {
			err := st.run(ctx)
			if err != nil {
				err = fmt.Errorf("%s: %w", st.name, err)
			}
			errc <- err
		}()
	}
	// The first stage to fail stops the others: a leader with a broken
	// stage must not keep leading as if all was well.
	var first error
	for range stages {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		} else if first == nil && ctx.Err() == nil {
			first = errors.New("a leader stage returned early")
			cancel()
		}
	}
	if ctx.Err() != nil && first != nil && errors.Is(first, context.Canceled) {
		return nil
	}
	return first
}

// heartbeatPeriod reads the cluster's heartbeat period (it changes at run
// time with `shoal cluster update`).
func (m *Manager) heartbeatPeriod() time.Duration {
	// Every heartbeat asks: read without the store's lock, which a
	// burst of Raft applies would make it wait for.
	p := m.st.Cluster().GetSpec().GetDispatcher().GetHeartbeatPeriod().AsDuration()
	if p <= 0 {
		return 5 * time.Second
	}
	return p
}

// ensureCluster commits the bootstrap cluster object on a new cluster's
// first leadership, then forgets the file that held its CA key.
func (m *Manager) ensureCluster(ctx context.Context) error {
	var have bool
	m.st.View(func(tx *state.ReadTx) { have = tx.Cluster() != nil })
	if !have {
		if m.ident.bootstrap == nil {
			return errors.New("this manager leads but the cluster object is missing and it holds no bootstrap material")
		}
		err := m.raft.Update(ctx, func(tx *state.Tx) error {
			return tx.CreateCluster(m.ident.bootstrap)
		})
		if err != nil && !errors.Is(err, sdk.ErrAlreadyExists) {
			return fmt.Errorf("create cluster: %w", err)
		}
		m.log.Info("cluster created", "cluster_id", m.ident.bootstrap.Id)
	}
	if m.ident.bootstrap != nil {
		if err := os.Remove(bootstrapFile(m.cfg)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		m.ident.bootstrap = nil
	}
	return nil
}
