package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/config"
	"github.com/shoalhq/shoal/kernel/gossip"
	"github.com/shoalhq/shoal/kernel/tasknet"
	"github.com/shoalhq/shoal/sdk/executor"
	"github.com/shoalhq/shoal/sdk/netfiles"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// A worker that runs real tasks (its executor is not "simulated") takes
// part in the gossip between workers (kernel/gossip) and keeps the host's
// routes to the other nodes' slices of the networks its tasks are on
// (tasknet.Router: plain routes to the nodes on its link, VXLAN to the
// others, with the VTEP MACs the nodes gossip): the executor plugin
// attaches tasks to their networks in its own process; the routes between
// nodes are the agent's.
//
// netSync sees the tasks through the executor the agent calls (netExecutor):
// a task with networks that Prepare made ready is published (its endpoints,
// and the node's slices of its networks), and withdrawn when Remove deleted
// it. What is published is kept in netStateFile under the worker directory,
// since a restarted agent adopts running tasks without preparing them again.
//
// The gossip starts when the first session brings the cluster's gossip key
// (all gossip is encrypted); the managers also name a few other nodes to
// join through. The port is chosen before, so the node can report its
// gossip address in the session's hello: a configured port, or, for port 0,
// one found free at start.
//
// One goroutine (run) owns the gossip member: it starts it, publishes, and
// sets the routes whenever the published set or the gossip's view changed.
// Joins run on a second goroutine, since a join waits on the network.

// netStateFile is where a worker keeps the tasks it published.
const netStateFile = "netsync.json"

const (
	// routeResync is how often the routes are set again even when nothing
	// changed, to repair a route someone deleted by hand.
	routeResync = 30 * time.Second
	// joinRetryMax bounds the wait between join attempts while the node
	// knows seeds but reaches none (they may start their gossip later).
	joinRetryMax = 15 * time.Second
)

// router sets the host's routes to other nodes' slices; tasknet.Router in
// production.
type router interface {
	Set(locals []tasknet.Local, peers []tasknet.Peer) error
}

// overlayRouter is a router that also keeps the VXLAN overlay to the peers
// not on this node's link (tasknet.Router): it needs the node's ID and
// underlay address, and gives the node's VTEP MAC, which gossip publishes.
type overlayRouter interface {
	SetUnderlay(nodeID, addr string) (vtepMAC string, err error)
}

// netTask is a published task: what gossip and routes need of it.
type netTask struct {
	ServiceID   string        `json:"service_id,omitempty"`
	ServiceName string        `json:"service_name"`
	Networks    []netAttached `json:"networks"`
	// TaskName is "SERVICE.SLOT" or "SERVICE.NODEID" (global).
	TaskName string `json:"task_name,omitempty"`
	// DNSRR: the service is in endpoint mode dnsrr.
	DNSRR bool `json:"dnsrr,omitempty"`
	// Ingress are the service's routing-mesh ports (gossip.IngressPort).
	Ingress []string `json:"ingress,omitempty"`
	// Backend: the task runs and is healthy (or has no check), as its
	// latest status says (statusReported).
	Backend bool `json:"backend,omitempty"`
}

// netAttached is one of a task's networks.
type netAttached struct {
	NetworkID  string   `json:"network_id"`
	Addr       string   `json:"addr"` // the task's address, without prefix
	Subnet     string   `json:"subnet"`
	NodeSubnet string   `json:"node_subnet"`
	Aliases    []string `json:"aliases,omitempty"`
	Gateway    string   `json:"gateway,omitempty"`
	// VIP is the service's virtual IP on the network, without prefix.
	VIP string `json:"vip,omitempty"`
}

// netSync is a worker's gossip member and route keeper.
type netSync struct {
	nodeID    string
	bindAddr  string
	bindPort  int
	advertise string
	statePath string
	router    router
	// vtepMAC is this node's VTEP MAC, published in its gossip head; empty
	// when the router keeps no overlay.
	vtepMAC   string
	log       *slog.Logger
	gossipLog *slog.Logger
	wake      chan struct{} // size 1: something changed
	joinWake  chan struct{} // size 1: new seeds

	mu    sync.Mutex
	tasks map[string]netTask // published, by task ID
	// restored are the tasks read from the file and not prepared or
	// removed since: those forgetGone may find gone.
	restored map[string]bool
	dirty    bool           // tasks changed since the last publish
	key      []byte         // the cluster's gossip key, once a session brought it
	seeds    []string       // the latest gossip peers the managers named
	settled  bool           // the first join attempt ended: routes may be set
	g        *gossip.Gossip // nil until the key came
	// view is the node's DNS and load balancing, fed with every endpoint
	// after each sync; nil in tests that only look at gossip and routes.
	view *serviceView
	// gen counts changes of tasks; applied is the gen the last sync
	// handed to view, and appliedCh is closed (and replaced) when it
	// moves, for waitApplied.
	gen, applied uint64
	appliedCh    chan struct{}
	// resyncDue: the periodic resync is due; the next sync rewrites the
	// balancer's table even if nothing changed.
	resyncDue bool
}

// newNetSync prepares the gossip of node nodeID as cfg's [gossip] asks,
// with the published tasks of an earlier run from dir.
func newNetSync(cfg config.Gossip, nodeID, dir string, r router, logger *slog.Logger) (*netSync, error) {
	host, port, err := net.SplitHostPort(cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("gossip.listen_addr: %w", err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("gossip.listen_addr: port %q: %w", port, err)
	}
	if p == 0 {
		if p, err = freeGossipPort(host); err != nil {
			return nil, fmt.Errorf("gossip.listen_addr: %w", err)
		}
	}
	adv, err := cfg.AdvertiseHost()
	if err != nil {
		return nil, fmt.Errorf("gossip.advertise_addr: %w", err)
	}
	s := &netSync{
		nodeID: nodeID, bindAddr: host, bindPort: p, advertise: adv,
		statePath: filepath.Join(dir, netStateFile),
		router:    r,
		log:       logger.With("part", "netsync"),
		gossipLog: logger.With("part", "gossip"),
		wake:      make(chan struct{}, 1),
		joinWake:  make(chan struct{}, 1),
		tasks:     map[string]netTask{},
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	if o, ok := r.(overlayRouter); ok {
		// The VXLAN device sends from the address the node gossips from,
		// which the other nodes know it by.
		mac, err := o.SetUnderlay(nodeID, adv)
		if err != nil {
			s.log.Warn("no VXLAN overlay: the node's tasks reach only those of nodes on its link", "advertise_addr", adv, "error", err)
		} else {
			s.vtepMAC = mac
		}
	}
	return s, nil
}

// freeGossipPort finds a port free for both TCP and UDP on host, which
// memberlist binds together. Another process may take it before the gossip
// binds it; then the gossip fails to start and says so.
func freeGossipPort(host string) (int, error) {
	var last error
	for range 10 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(p)))
		l.Close()
		if err != nil {
			last = err
			continue
		}
		u.Close()
		return p, nil
	}
	return 0, fmt.Errorf("no port free for TCP and UDP: %w", last)
}

// Addr is the gossip address the node reports in its hello.
func (s *netSync) Addr() string {
	return net.JoinHostPort(s.advertise, strconv.Itoa(s.bindPort))
}

// onSession takes the gossip key and peers of a session (agent.Config's
// OnSession); it does not block.
func (s *netSync) onSession(info *workerv1.SessionInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := info.GetGossipKey()
	if len(k) > 0 {
		switch {
		case s.key == nil:
			s.key = slices.Clone(k)
			signal(s.wake)
		case !slices.Equal(s.key, k):
			s.log.Warn("the managers sent another gossip key; keeping the first until the agent restarts")
		}
	}
	if peers := info.GetGossipPeers(); len(peers) > 0 {
		s.seeds = slices.Clone(peers)
		signal(s.joinWake)
	} else if len(k) > 0 && !s.settled {
		// The first node to gossip: nobody to join.
		s.settled = true
		signal(s.wake)
	}
}

// prepared publishes t if it has networks.
func (s *netSync) prepared(t *objectv1.Task) {
	nt, ok := netTaskOf(t)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.restored, t.GetId())
	if old, had := s.tasks[t.GetId()]; had {
		nt.Backend = old.Backend
		if equalNetTask(old, nt) {
			return
		}
	}
	s.tasks[t.GetId()] = nt
	s.changed()
}

// statusReported follows a task's status (agent.Config's OnStatus): a task
// is a backend of its service (in DNS answers, behind its VIP and published
// ports, on every node) while it runs and is healthy or has no health
// check. It does not block: the change is published by run.
func (s *netSync) statusReported(id string, st *objectv1.TaskStatus) {
	backend := st.GetState() == objectv1.TaskState_TASK_STATE_RUNNING &&
		(st.GetHealth() == objectv1.TaskHealth_TASK_HEALTH_UNSPECIFIED || st.GetHealth() == objectv1.TaskHealth_TASK_HEALTH_HEALTHY)
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tasks[id]
	if !ok || t.Backend == backend {
		return
	}
	t.Backend = backend
	s.tasks[id] = t
	s.changed()
}

// removed withdraws task id.
func (s *netSync) removed(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.restored, id)
	if _, had := s.tasks[id]; !had {
		return
	}
	delete(s.tasks, id)
	s.changed()
}

// changed records and saves a change of s.tasks. s.mu is held.
func (s *netSync) changed() {
	s.dirty = true
	s.gen++
	if err := s.save(); err != nil {
		s.log.Warn("cannot save the published tasks; a restarted agent may miss some", "path", s.statePath, "error", err)
	}
	signal(s.wake)
}

// forgetGone drops the restored tasks the executor no longer holds (removed
// while the agent was down). Tasks prepared meanwhile are not its business:
// the listing may predate them.
func (s *netSync) forgetGone(ctx context.Context, exec executor.Executor) error {
	held, err := exec.List(ctx)
	if err != nil {
		return err
	}
	have := make(map[string]bool, len(held))
	for _, t := range held {
		have[t.TaskID] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.tasks)
	maps.DeleteFunc(s.tasks, func(id string, _ netTask) bool { return s.restored[id] && !have[id] })
	s.restored = nil
	if len(s.tasks) != n {
		s.changed()
	}
	return nil
}

// run runs the gossip until ctx ends, and returns nil then: a gossip that
// cannot start (its port taken) is logged and tried again every
// routeResync, since the node's tasks run without it. exec lists the tasks
// still held, once.
func (s *netSync) run(ctx context.Context, exec executor.Executor) error {
	if err := s.forgetGone(ctx, exec); err != nil && ctx.Err() == nil {
		s.log.Warn("cannot list the executor's tasks; keeping every recorded endpoint", "error", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { s.joinLoop(ctx) })
	defer func() {
		s.mu.Lock()
		g := s.g
		s.mu.Unlock()
		if g != nil {
			// No Leave: the others would drop this node's endpoints and
			// routes at once, while its tasks keep running across an
			// agent restart. A restarted member rejoins within seconds;
			// a node that is gone for good is found dead.
			if err := g.Shutdown(); err != nil {
				s.log.Warn("stop gossip", "error", err)
			}
		}
	}()
	resync := time.NewTicker(routeResync)
	defer resync.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-resync.C:
			s.mu.Lock()
			s.resyncDue = true
			s.mu.Unlock()
		}
		if err := s.sync(); err != nil {
			if err.Error() != lastErr {
				s.log.Warn("gossip and routes", "error", err)
			}
			lastErr = err.Error()
			continue
		}
		lastErr = ""
	}
}

// sync starts the gossip once the key is known, publishes what changed,
// and sets the routes.
func (s *netSync) sync() error {
	s.mu.Lock()
	g, key := s.g, s.key
	s.mu.Unlock()
	if key == nil {
		return nil // no session yet
	}
	if g == nil {
		var err error
		g, err = gossip.New(gossip.Config{
			NodeID:        s.nodeID,
			BindAddr:      s.bindAddr,
			BindPort:      s.bindPort,
			AdvertiseAddr: s.advertise,
			Logger:        s.gossipLog,
			SecretKey:     key,
			OnChange:      func() { signal(s.wake) },
			VTEPMAC:       s.vtepMAC,
		})
		if err != nil {
			// Not fatal to the node: its tasks run, only not reachable
			// from other nodes' tasks. Tried again at the next resync.
			return fmt.Errorf("%w: the node's tasks cannot reach other nodes' until it starts (is gossip.listen_addr's port taken?)", err)
		}
		s.log.Info("gossip started", "addr", g.LocalAddr())
		s.mu.Lock()
		s.g = g
		s.dirty = true
		s.mu.Unlock()
		signal(s.joinWake)
	}

	s.mu.Lock()
	dirty, settled, gen := s.dirty, s.settled, s.gen
	s.dirty = false
	eps, sls, locals := s.published()
	gateways := s.gateways()
	s.mu.Unlock()
	var errs []error
	if dirty {
		if err := g.Publish(eps); err != nil {
			errs = append(errs, err)
		}
		if err := g.PublishSlices(sls); err != nil {
			errs = append(errs, err)
		}
		if len(errs) > 0 {
			// Again at the next change or resync.
			s.mu.Lock()
			s.dirty = true
			s.mu.Unlock()
		}
	}
	if s.view != nil {
		s.mu.Lock()
		force := s.resyncDue
		s.resyncDue = false
		s.mu.Unlock()
		if err := s.view.apply(context.Background(), g.Endpoints(), gateways, force); err != nil {
			errs = append(errs, err)
		}
	}
	s.mu.Lock()
	if gen > s.applied {
		s.applied = gen
		if s.appliedCh != nil {
			close(s.appliedCh)
			s.appliedCh = nil
		}
	}
	s.mu.Unlock()
	if !settled {
		// Until the first join, the gossip knows no peer: routes set now
		// would delete those a restarted agent's node still needs.
		return errors.Join(errs...)
	}
	var peers []tasknet.Peer
	for _, p := range g.Peers() {
		for _, sl := range p.Slices {
			peers = append(peers, tasknet.Peer{NodeID: p.NodeID, NodeAddr: p.Addr, NetworkID: sl.NetworkID, NodeSubnet: sl.NodeSubnet, VTEPMAC: p.VTEPMAC})
		}
	}
	if err := s.router.Set(locals, peers); err != nil {
		errs = append(errs, fmt.Errorf("routes: %w", err))
	}
	return errors.Join(errs...)
}

// waitApplied waits until the node's DNS and balancer hold every change of
// the published tasks made so far, or until ctx ends or the gossip is not
// running (then DNS follows when it starts). A task's resolver may ask
// for names as soon as its process starts: the node's DNS answers only
// clients it knows, so the task's own endpoint must be in its index first.
func (s *netSync) waitApplied(ctx context.Context) {
	s.mu.Lock()
	want := s.gen
	s.mu.Unlock()
	for {
		s.mu.Lock()
		if s.applied >= want || s.g == nil || s.view == nil {
			s.mu.Unlock()
			return
		}
		if s.appliedCh == nil {
			s.appliedCh = make(chan struct{})
		}
		ch := s.appliedCh
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

// gateways are the node's gateway addresses on the networks of its tasks,
// sorted. s.mu is held.
func (s *netSync) gateways() []string {
	var out []string
	for _, t := range s.tasks {
		for _, n := range t.Networks {
			if n.Gateway != "" && !slices.Contains(out, n.Gateway) {
				out = append(out, n.Gateway)
			}
		}
	}
	slices.Sort(out)
	return out
}

// joinLoop joins the seeds the managers named, again with backoff while
// none answers and the gossip knows no peer.
func (s *netSync) joinLoop(ctx context.Context) {
	wait := time.Second
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.joinWake:
			wait = time.Second
		case <-retry:
		}
		retry = nil
		s.mu.Lock()
		g, seeds := s.g, slices.Clone(s.seeds)
		s.mu.Unlock()
		if g == nil || len(seeds) == 0 {
			continue // the gossip starts, or seeds come, later: joinWake again
		}
		n, err := g.Join(seeds)
		s.mu.Lock()
		first := !s.settled
		s.settled = true
		s.mu.Unlock()
		if first {
			signal(s.wake)
		}
		if err != nil && len(g.Peers()) == 0 {
			s.log.Info("no gossip peer answers yet", "seeds", seeds, "error", err, "retry_in", wait)
			retry = time.After(wait)
			wait = min(2*wait, joinRetryMax)
			continue
		}
		s.log.Debug("joined gossip", "seeds", seeds, "reached", n)
	}
}

// published returns the endpoints, slices and local networks of s.tasks, in
// a stable order. s.mu is held.
func (s *netSync) published() ([]gossip.Endpoint, []gossip.Slice, []tasknet.Local) {
	ids := make([]string, 0, len(s.tasks))
	for id := range s.tasks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	eps := []gossip.Endpoint{}
	var sls []gossip.Slice
	var locals []tasknet.Local
	seen := map[tasknet.Local]bool{}
	for _, id := range ids {
		t := s.tasks[id]
		for _, n := range t.Networks {
			eps = append(eps, gossip.Endpoint{TaskID: id, ServiceID: t.ServiceID, ServiceName: t.ServiceName,
				NetworkID: n.NetworkID, Addr: n.Addr, Aliases: n.Aliases,
				TaskName: t.TaskName, VIP: n.VIP, DNSRR: t.DNSRR, Backend: t.Backend, Ingress: t.Ingress})
			l := tasknet.Local{NetworkID: n.NetworkID, Subnet: n.Subnet, NodeSubnet: n.NodeSubnet}
			if !seen[l] {
				seen[l] = true
				locals = append(locals, l)
				sls = append(sls, gossip.Slice{NetworkID: n.NetworkID, NodeSubnet: n.NodeSubnet})
			}
		}
	}
	return eps, sls, locals
}

// netTaskOf is what is published of t; false when t has no networks.
func netTaskOf(t *objectv1.Task) (netTask, bool) {
	if len(t.GetNetworks()) == 0 {
		return netTask{}, false
	}
	nt := netTask{ServiceID: t.GetServiceId(), ServiceName: t.GetServiceAnnotations().GetName()}
	if nt.ServiceName == "" {
		nt.ServiceName = t.GetServiceId() // a task outside any service: found by its ID
	}
	if nt.ServiceName == "" {
		nt.ServiceName = t.GetId()
	}
	nt.TaskName = taskName(t)
	nt.DNSRR = t.GetEndpoint().GetMode() == objectv1.EndpointMode_ENDPOINT_MODE_DNSRR
	for _, p := range t.GetEndpoint().GetPorts() {
		if p.GetMode() != objectv1.PublishMode_PUBLISH_MODE_INGRESS || len(nt.Ingress) == gossip.MaxIngressPorts {
			continue // the control API refuses more
		}
		proto := p.GetProtocol()
		if proto == "" {
			proto = "tcp"
		}
		ip := gossip.IngressPort{Published: uint16(p.GetPublishedPort()), Target: uint16(p.GetTargetPort()), Protocol: proto}
		nt.Ingress = append(nt.Ingress, ip.String())
	}
	for _, a := range t.GetNetworks() {
		nt.Networks = append(nt.Networks, netAttached{
			NetworkID: a.GetNetworkId(), Addr: plainAddr(a.GetAddr()), Subnet: a.GetSubnet(), NodeSubnet: a.GetNodeSubnet(),
			Aliases: slices.Clone(a.GetAliases()), Gateway: a.GetGateway(), VIP: plainAddr(a.GetServiceVip()),
		})
	}
	return nt, true
}

// plainAddr is the address of a CIDR ("10.200.3.7/24" -> "10.200.3.7");
// anything else is returned as it is.
func plainAddr(s string) string {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr().String()
	}
	return s
}

// taskName is a task's name without its ID, as the task's own /etc/hosts
// has it (sdk/netfiles): SERVICE.SLOT, or SERVICE.NODEID for a global one.
func taskName(t *objectv1.Task) string {
	if names := netfiles.TaskNames(t); len(names) > 0 {
		return names[0]
	}
	return ""
}

func equalNetTask(a, b netTask) bool {
	return a.ServiceID == b.ServiceID && a.ServiceName == b.ServiceName && a.TaskName == b.TaskName &&
		a.DNSRR == b.DNSRR && a.Backend == b.Backend && slices.Equal(a.Ingress, b.Ingress) &&
		slices.EqualFunc(a.Networks, b.Networks, func(x, y netAttached) bool {
			return x.NetworkID == y.NetworkID && x.Addr == y.Addr && x.Subnet == y.Subnet &&
				x.NodeSubnet == y.NodeSubnet && slices.Equal(x.Aliases, y.Aliases) && x.Gateway == y.Gateway && x.VIP == y.VIP
		})
}

// load reads the tasks an earlier run published.
func (s *netSync) load() error {
	b, err := os.ReadFile(s.statePath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", s.statePath, err)
	}
	if err := json.Unmarshal(b, &s.tasks); err != nil {
		// Not fatal: the tasks prepared from now on are published, and
		// the file is rewritten.
		s.log.Warn("ignoring an unreadable file of published tasks", "path", s.statePath, "error", err)
		s.tasks = map[string]netTask{}
	}
	if s.tasks == nil {
		s.tasks = map[string]netTask{}
	}
	s.dirty = len(s.tasks) > 0
	s.restored = make(map[string]bool, len(s.tasks))
	for id := range s.tasks {
		s.restored[id] = true
	}
	return nil
}

// save writes s.tasks atomically. s.mu is held.
func (s *netSync) save() error {
	b, err := json.Marshal(s.tasks)
	if err != nil {
		return err
	}
	tmp := s.statePath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.statePath)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// netExecutor is the node's executor as the agent calls it, telling
// netSync which tasks with networks were prepared and removed.
type netExecutor struct {
	executor.Executor
	ns *netSync
}

var _ executor.Executor = (*netExecutor)(nil)

func (x *netExecutor) Prepare(ctx context.Context, t *objectv1.Task, files []*objectv1.TaskFile, progress func(string)) error {
	if err := x.Executor.Prepare(ctx, hostPortsOnly(t), files, progress); err != nil {
		return err
	}
	x.ns.prepared(t)
	wctx, cancel := context.WithTimeout(ctx, applyWait)
	x.ns.waitApplied(wctx)
	cancel()
	return nil
}

// applyWait bounds how long Prepare waits for the node's DNS to know the
// task: a sync is a few map operations and one nftables batch, far less.
const applyWait = 5 * time.Second

// hostPortsOnly is t as the executor sees it: the ports published through
// the routing mesh are the node's balancer's (on every node), not the
// executor's; it binds only host-mode ports on its node.
func hostPortsOnly(t *objectv1.Task) *objectv1.Task {
	ports := t.GetEndpoint().GetPorts()
	if !slices.ContainsFunc(ports, func(p *objectv1.PortConfig) bool { return p.GetMode() == objectv1.PublishMode_PUBLISH_MODE_INGRESS }) {
		return t
	}
	c := proto.Clone(t).(*objectv1.Task)
	c.Endpoint.Ports = slices.DeleteFunc(c.Endpoint.Ports, func(p *objectv1.PortConfig) bool { return p.GetMode() == objectv1.PublishMode_PUBLISH_MODE_INGRESS })
	return c
}

func (x *netExecutor) Remove(ctx context.Context, taskID string) error {
	if err := x.Executor.Remove(ctx, taskID); err != nil {
		return err
	}
	x.ns.removed(taskID)
	return nil
}
