package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/shoalhq/shoal/kernel/ids"
	"github.com/shoalhq/shoal/kernel/secrets"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

const (
	// maxBatch and maxBatchInterval pace assignment changes and status
	// writes: a burst (a service scaled by thousands) goes out as a few
	// large messages and Raft entries instead of thousands of small ones,
	// while a lone change waits at most 100 ms. The same pacing SwarmKit's
	// dispatcher proved at scale.
	maxBatch         = 100
	maxBatchInterval = 100 * time.Millisecond
	// flushTick is how often the event loop looks for batches whose
	// interval ran out: the 100 ms bound is kept to within this.
	flushTick = 10 * time.Millisecond
)

// Raft commits transactions; raftstore.Node implements it.
type Raft interface {
	Update(ctx context.Context, fn func(tx *state.Tx) error) error
}

// Presence tracks heartbeat deadlines; presence.Tracker implements it.
type Presence interface {
	// Beat records a heartbeat and returns the period to hand back.
	Beat(nodeID string) time.Duration
	// Expect gives known nodes a grace period to reconnect.
	Expect(nodeIDs []string, grace time.Duration)
	// Forget stops tracking a node.
	Forget(nodeID string)
	// Run reports nodes whose deadline passed, in batches, until ctx ends.
	Run(ctx context.Context, down func(nodeIDs []string)) error
}

// minGrace is the least grace a node gets after a leader change.
const minGrace = 5 * time.Second

// Dispatcher is the leader-only stage serving worker sessions.
type Dispatcher struct {
	raft     Raft
	st       *state.Store
	presence Presence
	grace    time.Duration
	log      *slog.Logger
	secrets  *secrets.Holder

	ops    chan func() // run on the event loop
	status *statusBatcher
	nodes  *nodeBatcher

	done chan struct{} // closed when Run returns
	// stopped is closed when the event loop has ended (or Run ended
	// before starting it): an op sent after that never runs.
	stopped chan struct{}

	mu       sync.Mutex
	sessions map[string]*session // by node ID
	running  bool
	gossip   gossipPool // the gossip addresses of the sessions' nodes

	logs  logSubs // open task log subscriptions (logs.go)
	execs execs   // execs waiting for their worker or running (exec.go)
	// volumes are the volume requests waiting for their reply (volumes.go).
	volumes volumeCalls
}

// Config configures a Dispatcher.
type Config struct {
	// Grace is how long, after this manager becomes leader, a known node
	// has to reconnect before it is declared down. Default when zero: 5
	// heartbeat periods, at least minGrace. A worker whose manager died must
	// notice (its stream breaks, or 2 periods pass without a heartbeat
	// reply), back off, and reconnect, possibly through a follower whose
	// relay is itself reconnecting: marking it down for that would move its
	// tasks for nothing.
	Grace  time.Duration
	Logger *slog.Logger
	// StatusWritten, when set, is told how many task status reports each
	// write committed (for metrics).
	StatusWritten func(n int)
	// Secrets opens the secrets of the tasks sent to workers (files.go);
	// nil: tasks using secrets are sent without them, and fail.
	Secrets *secrets.Holder
}

// New returns a dispatcher that writes through r, reads st, and tracks
// heartbeats with p.
func New(r Raft, st *state.Store, p Presence, cfg Config) *Dispatcher {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := &Dispatcher{
		raft: r, st: st, presence: p, grace: cfg.Grace, log: logger, secrets: cfg.Secrets,
		ops:      make(chan func(), 1024),
		done:     make(chan struct{}),
		stopped:  make(chan struct{}),
		sessions: map[string]*session{},
	}
	d.status = newStatusBatcher(r, logger)
	d.status.written = cfg.StatusWritten
	d.nodes = newNodeBatcher(r, logger)
	return d
}

// Run serves sessions until ctx ends (leadership lost) or a part of the
// dispatcher fails, then closes them all so that their workers reconnect,
// to the new leader or to this manager's next dispatcher.
//
// The parts (the event loop, the status and node writers, the presence
// tracker) share one context, cancelled as soon as any of them stops: a
// dispatcher whose event loop ended (its state watch closed, say) must not
// keep marking nodes down while no session can open. Run returns only once
// every part has exited: nil when ctx ended, else the first failure.
func (d *Dispatcher) Run(ctx context.Context) error {
	defer close(d.done)
	stopLoop := sync.OnceFunc(func() { close(d.stopped) })
	defer stopLoop()
	if err := d.ensureGossipKey(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	events, cancelWatch := d.st.ViewAndWatch(func(tx *state.ReadTx) {
		var known []string
		for _, n := range tx.Nodes() {
			// Only nodes that run tasks heartbeat; a manager without an
			// agent is not tracked.
			if n.GetDescription().GetExecutor() != "" && n.GetStatus().GetState() != objectv1.NodeState_NODE_STATE_DOWN {
				known = append(known, n.Id)
			}
		}
		grace := d.grace
		if grace == 0 {
			grace = max(5*heartbeatPeriod(tx.Cluster()), minGrace)
		}
		// Every node starts Unknown: it has the grace period to show up.
		d.presence.Expect(known, grace)
	})
	defer cancelWatch()
	d.mu.Lock()
	d.running = true
	d.mu.Unlock()

	partsCtx, stopParts := context.WithCancelCause(ctx)
	defer stopParts(nil)
	var wg sync.WaitGroup
	part := func(name string, run func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := run(partsCtx)
			if partsCtx.Err() != nil {
				return // stopped because the others did, or ctx ended
			}
			if err == nil {
				err = errors.New("stopped on its own")
			}
			stopParts(fmt.Errorf("%s: %w", name, err))
		}()
	}
	part("status writer", d.status.run)
	part("node writer", d.nodes.run)
	part("presence", func(ctx context.Context) error { return d.presence.Run(ctx, d.markDown) })

	if err := d.loop(partsCtx, events); err != nil {
		stopParts(err)
	}
	stopLoop()

	d.mu.Lock()
	d.running = false
	sessions := d.sessions
	d.sessions = map[string]*session{}
	d.gossip = gossipPool{}
	d.mu.Unlock()
	for _, s := range sessions {
		// Relayed sessions are not closed one by one: their relay stream
		// ends, and the follower re-opens them on the new leader without
		// their workers noticing.
		if _, relayed := s.peer.(*relayPeer); relayed {
			continue
		}
		s.peer.close(fmt.Errorf("this manager is no longer the leader: %w", sdk.ErrUnavailable))
	}
	stopParts(nil)
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return context.Cause(partsCtx)
}

func heartbeatPeriod(c *objectv1.Cluster) time.Duration {
	if p := c.GetSpec().GetDispatcher().GetHeartbeatPeriod().AsDuration(); p > 0 {
		return p
	}
	return 5 * time.Second
}

// loop is the only goroutine that touches the sessions' assignment state.
func (d *Dispatcher) loop(ctx context.Context, events <-chan state.Event) error {
	tick := time.NewTicker(flushTick)
	defer tick.Stop()
	dirty := map[*session]bool{}
	managersChanged := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case op := <-d.ops:
			op()
		case ev, ok := <-events:
			if !ok {
				// The loop fell too far behind the store, or the state was
				// restored under it: the sessions' assignment sets are
				// stale. The dispatcher ends; its manager starts a new one,
				// to which every worker reconnects and resyncs.
				return fmt.Errorf("state watch closed (fell behind, or the state was restored): %w", sdk.ErrUnavailable)
			}
			if d.apply(ev, dirty) {
				managersChanged = true
			}
		case now := <-tick.C:
			if managersChanged {
				managersChanged = false
				d.broadcastManagers()
			}
			for s := range dirty {
				if s.flushDue(now) {
					s.flush()
					delete(dirty, s)
				}
			}
		}
	}
}

// apply routes one store event to the session of the node it concerns.
// It returns true when the manager list changed.
func (d *Dispatcher) apply(ev state.Event, dirty map[*session]bool) bool {
	switch {
	case ev.Task != nil:
		var old *objectv1.Task = ev.OldTask
		if old != nil && old.GetNodeId() != "" && old.GetNodeId() != ev.Task.GetNodeId() {
			if s := d.session(old.GetNodeId()); s != nil && s.change(old, true) {
				dirty[s] = true
			}
		}
		node := ev.Task.GetNodeId()
		if node == "" {
			return false
		}
		if s := d.session(node); s != nil {
			removed := ev.Kind == deleteKind
			if s.change(ev.Task, removed) {
				dirty[s] = true
			}
			if s.full() {
				s.flush()
				delete(dirty, s)
			}
		}
	case ev.Node != nil:
		if ev.Kind == deleteKind {
			if s := d.session(ev.Node.Id); s != nil {
				d.drop(s, fmt.Errorf("node %s was removed from the cluster: %w", ev.Node.Id, sdk.ErrPermissionDenied))
			}
			d.presence.Forget(ev.Node.Id)
		}
		old, cur := ev.OldNode.GetManagerStatus(), ev.Node.GetManagerStatus()
		if (old == nil) != (cur == nil) || old.GetApiAddr() != cur.GetApiAddr() || old.GetWeight() != cur.GetWeight() || ev.Kind == deleteKind {
			return true
		}
	}
	return false
}

func (d *Dispatcher) session(nodeID string) *session {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sessions[nodeID]
}

// managers lists the managers workers may connect to.
func managers(tx *state.ReadTx) []*workerv1.WeightedManager {
	var out []*workerv1.WeightedManager
	for _, n := range tx.NodesByRole(objectv1.NodeRole_NODE_ROLE_MANAGER) {
		ms := n.GetManagerStatus()
		if ms.GetApiAddr() == "" {
			continue
		}
		out = append(out, &workerv1.WeightedManager{Addr: ms.GetApiAddr(), NodeId: n.Id, Weight: ms.GetWeight()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeId < out[j].NodeId })
	return out
}

func (d *Dispatcher) broadcastManagers() {
	var list []*workerv1.WeightedManager
	d.st.View(func(tx *state.ReadTx) { list = managers(tx) })
	d.mu.Lock()
	sessions := make([]*session, 0, len(d.sessions))
	for _, s := range d.sessions {
		sessions = append(sessions, s)
	}
	d.mu.Unlock()
	for _, s := range sessions {
		s.peer.send(&workerv1.ManagerMessage{Msg: &workerv1.ManagerMessage_Session{Session: &workerv1.SessionInfo{
			SessionId: s.id, NodeId: s.nodeID, Managers: list,
		}}})
	}
}

// Open starts a session for nodeID, whose worker said hello, reaching it
// through p. It returns the session, to which the worker's further messages
// go, or an error if the node may not have one.
func (d *Dispatcher) Open(ctx context.Context, nodeID string, hello *workerv1.Hello, p peer) (*session, error) {
	var (
		node *objectv1.Node
		list []*workerv1.WeightedManager
		key  []byte
	)
	d.st.View(func(tx *state.ReadTx) {
		node = tx.Node(nodeID)
		list = managers(tx)
		key = gossipKey(tx)
	})
	if node == nil {
		return nil, fmt.Errorf("node %s is not part of the cluster (removed?): %w", nodeID, sdk.ErrPermissionDenied)
	}
	s := &session{id: ids.New(), nodeID: nodeID, d: d, peer: p, sent: map[string]sentTask{}}
	done := make(chan error, 1)
	op := func() {
		d.mu.Lock()
		if !d.running {
			d.mu.Unlock()
			done <- fmt.Errorf("not serving sessions: %w", sdk.ErrUnavailable)
			return
		}
		old := d.sessions[nodeID]
		d.sessions[nodeID] = s
		gossipPeers := d.gossip.pick(nodeID, maxGossipPeers, randN)
		d.gossip.set(nodeID, hello.GetDescription().GetGossipAddr())
		d.mu.Unlock()
		if old != nil {
			old.peer.close(fmt.Errorf("replaced by a newer session of the same node: %w", sdk.ErrAlreadyExists))
			d.logSessionEnded(old)
		}
		info := &workerv1.SessionInfo{SessionId: s.id, NodeId: nodeID, Managers: list}
		if hello.GetDescription().GetGossipAddr() != "" {
			info.GossipPeers, info.GossipKey = gossipPeers, key
		}
		p.send(&workerv1.ManagerMessage{Msg: &workerv1.ManagerMessage_Session{Session: info}})
		s.sendComplete()
		done <- nil
	}
	notServing := fmt.Errorf("not serving sessions: %w", sdk.ErrUnavailable)
	select {
	case d.ops <- op:
	case <-d.stopped:
		return nil, notServing
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var err error
	select {
	case err = <-done:
	case <-d.stopped:
		// The loop has ended: it ran op before, or never will.
		select {
		case err = <-done:
		default:
			err = notServing
		}
	}
	if err != nil {
		return nil, err
	}
	d.nodes.up(nodeID, hello.GetDescription())
	d.log.Debug("session opened", "node_id", nodeID, "session_id", s.id)
	return s, nil
}

// markDown commits nodes whose heartbeat deadline passed as Down. A node
// whose session is somehow still open (a heartbeat raced the deadline) has
// it closed: its worker reconnects and is committed Ready again, instead of
// staying Down while it heartbeats.
func (d *Dispatcher) markDown(nodeIDs []string) {
	for _, id := range nodeIDs {
		if s := d.session(id); s != nil {
			d.drop(s, fmt.Errorf("heartbeat deadline passed; reconnect: %w", sdk.ErrUnavailable))
		}
	}
	d.nodes.down(nodeIDs)
	d.log.Info("heartbeat deadlines passed", "nodes", len(nodeIDs))
}

// drop removes s (if still current) and closes its peer.
func (d *Dispatcher) drop(s *session, err error) {
	d.mu.Lock()
	if d.sessions[s.nodeID] == s {
		delete(d.sessions, s.nodeID)
		d.gossip.set(s.nodeID, "")
	}
	d.mu.Unlock()
	s.peer.close(err)
	d.logSessionEnded(s)
}

// Close ends s because its worker's stream ended. The node is not marked
// down: it has its heartbeat deadline to come back (through any manager).
func (d *Dispatcher) Close(s *session) {
	d.mu.Lock()
	if d.sessions[s.nodeID] == s {
		delete(d.sessions, s.nodeID)
		d.gossip.set(s.nodeID, "")
	}
	d.mu.Unlock()
	d.logSessionEnded(s)
}

// Sessions returns the number of open sessions.
func (d *Dispatcher) Sessions() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.sessions)
}
