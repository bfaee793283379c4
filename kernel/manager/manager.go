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

	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/kernel/config"
	"github.com/shoalhq/shoal/kernel/controlapi"
	"github.com/shoalhq/shoal/kernel/dashboard"
	"github.com/shoalhq/shoal/kernel/dispatch"
	"github.com/shoalhq/shoal/kernel/events"
	"github.com/shoalhq/shoal/kernel/pluginhost"
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

// Manager is one manager node. New checks its config; Run acquires the
// node's identity, its listeners and its Raft state, serves, and releases
// them before it returns.
type Manager struct {
	cfg      config.Config
	apiAddr  string // advertised
	raftAddr string // advertised
	// schedPath and ipamPath are the plugin binaries.
	schedPath, ipamPath string
	// dashboardToken is the dashboard's admin token; "" for none.
	dashboardToken string
	st             *state.Store
	// secrets holds the cluster's secrets key once this manager knows it.
	secrets *secrets.Holder
	// ready is closed once Run serves; the fields below are set by Run
	// before, and only read after.
	ready   chan struct{}
	log     *slog.Logger // with the node ID once Run has loaded it
	ident   *identity
	raft    *raftstore.Node
	leader  *leaderDialer
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

// New checks a manager's part of the node's config and finds its plugins.
// It binds, opens and writes nothing: Run does.
func New(cfg config.Config, logger *slog.Logger) (*Manager, error) {
	apiAddr, err := cfg.Manager.AdvertiseAPI()
	if err != nil {
		return nil, fmt.Errorf("manager.advertise_addr: %w", err)
	}
	raftAddr, err := cfg.Manager.AdvertiseRaft()
	if err != nil {
		return nil, fmt.Errorf("manager.raft_advertise_addr: %w", err)
	}
	m := &Manager{cfg: cfg, log: logger, apiAddr: apiAddr, raftAddr: raftAddr, st: state.New(), secrets: &secrets.Holder{}, ready: make(chan struct{})}
	if m.schedPath, err = pluginhost.Resolve(sdk.KindScheduler, cfg.Plugins[sdk.KindScheduler].Path, bundledScheduler); err != nil {
		return nil, err
	}
	if m.ipamPath, err = pluginhost.Resolve(sdk.KindIPAM, cfg.Plugins[sdk.KindIPAM].Path, bundledIPAM); err != nil {
		return nil, err
	}
	if cfg.Metrics.ListenAddr != "" && cfg.Metrics.DashboardTokenFile != "" {
		if m.dashboardToken, err = dashboard.LoadToken(cfg.Metrics.DashboardTokenFile); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Ready is closed once Run serves: the node's identity is loaded, Raft is
// open and the listeners accept. NodeID, Identity and Raft may be called
// from then on. A Run that fails before never closes it.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// NodeID is this manager's node ID (once Ready is closed).
func (m *Manager) NodeID() string { return m.ident.id.NodeID() }

// Raft exposes the Raft node, for tests and benchmarks (once Ready is
// closed).
func (m *Manager) Raft() *raftstore.Node { return m.raft }

// Store exposes the state store, for tests and benchmarks.
func (m *Manager) Store() *state.Store { return m.st }

// APIAddr is the advertised API address.
func (m *Manager) APIAddr() string { return m.apiAddr }

// Identity is the node's certificate (once Ready is closed).
func (m *Manager) Identity() *ca.Identity { return m.ident.id }

// Run acquires what the manager holds — the node's certificate (loaded, or
// obtained by bootstrapping a cluster or joining one), its listeners, its
// plugins and its Raft state — then serves until ctx ends or a part fails,
// and releases them all before it returns. Run is called once.
func (m *Manager) Run(ctx context.Context) error {
	ident, err := loadIdentity(ctx, m.cfg, time.Now())
	if err != nil {
		return err
	}
	m.ident = ident
	m.log = m.log.With("node_id", ident.id.NodeID())
	if err := m.loadSecretsKey(ident.bootstrap != nil); err != nil {
		return err
	}
	apiLis, err := net.Listen("tcp", m.cfg.Manager.ListenAddr)
	if err != nil {
		return fmt.Errorf("manager.listen_addr: %w", err)
	}
	defer apiLis.Close()
	sockLis, err := listenUnix(m.cfg.Manager.ControlSocket)
	if err != nil {
		return fmt.Errorf("manager.control_socket: %w", err)
	}
	defer sockLis.Close()
	var metLis net.Listener // nil when metrics are off
	if m.cfg.Metrics.ListenAddr != "" {
		if metLis, err = net.Listen("tcp", m.cfg.Metrics.ListenAddr); err != nil {
			return fmt.Errorf("metrics.listen_addr: %w", err)
		}
		defer metLis.Close()
	}
	if m.sched, err = newSchedulerHost(m.cfg, m.schedPath, m.log); err != nil {
		return err
	}
	if m.ipam, err = newIPAMHost(m.cfg, m.ipamPath, m.log); err != nil {
		return err
	}
	// Nothing fails from here: serve runs raft, which releases it.
	if m.raft, err = raftstore.New(m.raftConfig(), m.st); err != nil {
		return err
	}
	m.leader = newLeaderDialer(m.raft, m.st, ident.id)
	api, local := m.servers()
	return m.runParts(ctx, listeners{api: apiLis, sock: sockLis, metrics: metLis}, api, local)
}

// raftConfig is the Raft node's config, from the node's.
func (m *Manager) raftConfig() raftstore.Config {
	cfg := m.cfg
	serverTLS, clientTLS := m.ident.id.MutualTLS()
	return raftstore.Config{
		NodeID:             m.ident.id.NodeID(),
		Dir:                raftDir(cfg),
		BindAddr:           cfg.Manager.RaftListenAddr,
		AdvertiseAddr:      m.raftAddr,
		ServerTLS:          serverTLS,
		ClientTLS:          clientTLS,
		Bootstrap:          m.ident.bootstrap != nil,
		HeartbeatTimeout:   cfg.Raft.HeartbeatTimeout.Duration,
		ElectionTimeout:    cfg.Raft.ElectionTimeout.Duration,
		LeaderLeaseTimeout: cfg.Raft.LeaderLeaseTimeout.Duration,
		CommitTimeout:      cfg.Raft.CommitTimeout.Duration,
		SnapshotThreshold:  uint64(cfg.Raft.SnapshotThreshold),
		SnapshotInterval:   cfg.Raft.SnapshotInterval.Duration,
		TrailingLogs:       uint64(cfg.Raft.TrailingLogs),
		MaxAppendEntries:   cfg.Raft.MaxAppendEntries,
		Logger:             m.log.With("part", "raft"),
	}
}

// servers builds the API's gRPC servers, on TLS and on the control socket,
// and the parts only they use.
func (m *Manager) servers() (api, local *grpc.Server) {
	m.workers = dispatch.NewService(m.leader, m.log.With("part", "dispatch"))
	m.hub = events.New(events.Config{}, m.st, m.log.With("part", "events"))
	eventsServer := events.NewServer(m.hub, m.log.With("part", "events"))
	control := controlapi.NewServer(m.raft, m.st, m.leader, m.log.With("part", "controlapi"), controlapi.WithLogs(m.workers), controlapi.WithExecs(m.workers), controlapi.WithVolumes(m.workers), controlapi.WithSecrets(m.secrets))
	caServer := &nodeCA{inner: ca.NewServer(&registrar{raft: m.raft, st: m.st}, m.log.With("part", "ca")), raft: m.raft, leader: m.leader}
	member := &membership{raft: m.raft, st: m.st, leader: m.leader, log: m.log.With("part", "membership"), secrets: m.secrets,
		saveKey: func(key []byte) error { return secrets.Save(secretsKeyFile(m.cfg), key) }}

	policy := apiPolicy()
	api = grpc.NewServer(controlapi.ServerOptions(
		grpc.Creds(credentials.NewTLS(m.ident.id.ServerTLS())),
		grpc.ChainUnaryInterceptor(policy.UnaryInterceptor(), control.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(policy.StreamInterceptor()),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)...)
	controlv1.RegisterControlServer(api, control)
	controlv1.RegisterEventsServer(api, eventsServer)
	cav1.RegisterNodeCAServer(api, caServer)
	raftv1.RegisterMembershipServer(api, member)
	workerv1.RegisterDispatcherServer(api, m.workers)
	workerv1.RegisterRelayServer(api, m.workers)
	backup := &backupServer{raft: m.raft, leader: m.leader, log: m.log.With("part", "backup")}
	controlv1.RegisterBackupServer(api, backup)

	// The unix socket is root's (0600): whoever can open it is the local
	// administrator, so it serves the control API without certificates.
	local = grpc.NewServer(controlapi.ServerOptions(grpc.ChainUnaryInterceptor(control.UnaryInterceptor()))...)
	controlv1.RegisterControlServer(local, control)
	controlv1.RegisterBackupServer(local, backup)
	controlv1.RegisterEventsServer(local, eventsServer)
	return api, local
}

// listeners are what Run binds for the manager's servers.
type listeners struct {
	api, sock net.Listener
	metrics   net.Listener // nil when metrics are off
}

// runParts runs Raft and every part of the manager on lis until ctx ends
// or a part fails. On the way out it stops the API, then the leader
// stages, then Raft (handing leadership over first), which releases it.
func (m *Manager) runParts(ctx context.Context, lis listeners, api, local *grpc.Server) error {
	partsCtx, stopParts := context.WithCancel(ctx)
	defer stopParts()
	raftCtx, stopRaft := context.WithCancel(context.Background())
	raftDone := make(chan error, 1)
	leadership := m.raft.Leadership()
	go func() { raftDone <- m.raft.Run(raftCtx) }()

	p := &parts{errc: make(chan error, 8), running: map[string]bool{}}
	run := func(name string, fn func(context.Context) error) { p.run(partsCtx, name, fn) }
	run("events", m.hub.Run)
	run("api", func(ctx context.Context) error { return serve(ctx, api, lis.api) })
	run("control socket", func(ctx context.Context) error { return serve(ctx, local, lis.sock) })
	if lis.metrics != nil {
		run("metrics", func(ctx context.Context) error { return m.serveMetrics(ctx, lis.metrics) })
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
	run("certificate renewal", m.renewLoop)
	m.log.Info("manager started", "api_addr", m.apiAddr, "control_socket", m.cfg.Manager.ControlSocket)
	close(m.ready)

	var err error
	raftStopped := false
	select {
	case <-ctx.Done():
	case err = <-p.errc:
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
	if names := p.wait(partsStopWait); len(names) > 0 {
		m.log.Error("manager parts did not stop in time; stopping raft anyway", "parts", names, "waited", partsStopWait)
	}
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

// renewLoop renews the node's certificate through any manager.
func (m *Manager) renewLoop(ctx context.Context) error {
	return ca.NewRenewer(m.ident.id, func(ctx context.Context) (cav1.NodeCAClient, error) {
		conn, err := m.anyManagerConn(ctx)
		if err != nil {
			return nil, err
		}
		return cav1.NewNodeCAClient(conn), nil
	}, m.log.With("part", "ca")).Run(ctx)
}

// parts runs the manager's parts, each in its goroutine, and keeps the
// names of those that have not returned.
type parts struct {
	wg   sync.WaitGroup
	errc chan error // the first errors of parts that failed

	mu      sync.Mutex
	running map[string]bool
}

// run runs fn under ctx; its error, unless ctx ended, goes to errc.
func (p *parts) run(ctx context.Context, name string, fn func(context.Context) error) {
	p.wg.Add(1)
	p.mu.Lock()
	p.running[name] = true
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		defer func() {
			p.mu.Lock()
			delete(p.running, name)
			p.mu.Unlock()
		}()
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			select {
			case p.errc <- fmt.Errorf("%s: %w", name, err):
			default: // one failure is enough to stop the manager
			}
		}
	}()
}

// wait waits up to d for every part to return and names those that have
// not, sorted.
func (p *parts) wait(d time.Duration) []string {
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.running))
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
