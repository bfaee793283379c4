package raftstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/shoalhq/shoal/kernel/hclogslog"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// Config configures a Node. Durations of zero take the default named.
type Config struct {
	// NodeID is the Raft server ID: the node's ID in its certificate.
	NodeID string
	// Dir holds the WAL and the snapshots. Created if missing.
	Dir string
	// BindAddr is the host:port the Raft transport listens on.
	BindAddr string
	// AdvertiseAddr is the host:port other managers dial; it must be routable.
	AdvertiseAddr string
	// ServerTLS and ClientTLS secure the transport: both sides must present a
	// manager certificate of the cluster's CA (ca.Identity.MutualTLS).
	ServerTLS, ClientTLS *tls.Config
	// Transport replaces the TLS transport; tests only (raft.InmemTransport).
	Transport raft.Transport

	// Bootstrap makes this node a one-server cluster when it has no Raft
	// state yet. It is ignored once the node has state.
	Bootstrap bool

	// HeartbeatTimeout: a follower that hears nothing for this long (times a
	// random factor from 1 to 2) starts an election. Default 300ms.
	HeartbeatTimeout time.Duration
	// ElectionTimeout: a candidate that wins no election for this long starts
	// another. Default 500ms.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout: a leader that cannot reach a quorum for this long
	// steps down. Default 250ms.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout: how long the leader waits before sending an empty
	// AppendEntries to push the commit index. Default 10ms.
	CommitTimeout time.Duration
	// SnapshotThreshold is the number of entries after which a snapshot is
	// taken. Default 8192.
	SnapshotThreshold uint64
	// SnapshotInterval is how often the threshold is checked. Default 30s.
	SnapshotInterval time.Duration
	// TrailingLogs is how many entries stay in the log after a snapshot, so
	// a follower slightly behind catches up without a snapshot. Default 10240.
	TrailingLogs uint64
	// MaxAppendEntries caps entries per AppendEntries RPC and per disk write.
	// Default 256.
	MaxAppendEntries int

	Logger *slog.Logger
}

func (c *Config) defaults() {
	setDur := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	setDur(&c.HeartbeatTimeout, 300*time.Millisecond)
	setDur(&c.ElectionTimeout, 500*time.Millisecond)
	setDur(&c.LeaderLeaseTimeout, 250*time.Millisecond)
	setDur(&c.CommitTimeout, 10*time.Millisecond)
	setDur(&c.SnapshotInterval, 30*time.Second)
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 10240
	}
	if c.MaxAppendEntries == 0 {
		c.MaxAppendEntries = 256
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Node is one manager's Raft server and the state it replicates.
type Node struct {
	cfg   Config
	st    *state.Store
	raft  *raft.Raft
	trans raft.Transport
	wal   *wal.WAL
	meta  *metadb.BoltMetaDB
	prop  *proposer
	stats proposerStats
	reads readGate

	leaderMu  sync.Mutex
	leaderSub []chan bool
}

// New opens the node's Raft state in cfg.Dir and starts its Raft server.
// The state store is filled from the latest snapshot and the log as Raft
// replays them. Call Run to serve proposals; Run also shuts Raft down.
func New(cfg Config, st *state.Store) (*Node, error) {
	cfg.defaults()
	if cfg.NodeID == "" {
		return nil, errors.New("raftstore: NodeID is required")
	}
	w, meta, snaps, err := openLog(cfg)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, st: st, wal: w, meta: meta}
	cleanup := func() {
		w.Close()
		meta.Close()
	}

	n.trans = cfg.Transport
	if n.trans == nil {
		stream, err := newTLSStream(cfg.BindAddr, cfg.AdvertiseAddr, cfg.ServerTLS, cfg.ClientTLS)
		if err != nil {
			cleanup()
			return nil, err
		}
		n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:  stream,
			MaxPool: 3,
			Timeout: 10 * time.Second,
			Logger:  hclogslog.New(cfg.Logger, "raft-net"),
		})
		cleanup = func() {
			n.trans.(*raft.NetworkTransport).Close()
			w.Close()
			meta.Close()
		}
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.MaxAppendEntries = cfg.MaxAppendEntries
	rc.BatchApplyCh = true
	rc.Logger = hclogslog.New(cfg.Logger, "raft")
	// Shutting down is not leaving: a restarted manager must find itself
	// in the configuration.
	rc.ShutdownOnRemove = false
	if err := raft.ValidateConfig(rc); err != nil {
		cleanup()
		return nil, fmt.Errorf("raftstore: %w", err)
	}

	if cfg.Bootstrap {
		has, err := raft.HasExistingState(w, w, snaps)
		if err != nil {
			cleanup()
			return nil, fmt.Errorf("raftstore: %w", err)
		}
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{
				ID: rc.LocalID, Address: n.trans.LocalAddr(), Suffrage: raft.Voter,
			}}}
			if err := raft.BootstrapCluster(rc, w, w, snaps, n.trans, conf); err != nil {
				cleanup()
				return nil, fmt.Errorf("raftstore: bootstrap: %w", err)
			}
		}
	}

	// The leader sends every entry to each follower right after appending
	// it; without a cache each AppendEntries reads it (and the one before)
	// back from the WAL and decodes it again.
	logs, err := raft.NewLogCache(logCacheEntries, w)
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("raftstore: log cache: %w", err)
	}
	r, err := raft.NewRaft(rc, &fsm{st: st}, logs, w, snaps, n.trans)
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("raftstore: %w", err)
	}
	n.raft = r
	n.prop = newProposer(r, &n.stats)
	return n, nil
}

// Run serves proposals and leadership notifications until ctx ends. Then,
// if this node leads a cluster of several voters, it hands leadership to
// another first (so writers see a short pause rather than an election
// timeout), shuts Raft down and closes the log.
//
// Stopping takes a bounded time whatever the peers do: the transfer waits
// a few election timeouts (at most maxTransferWait), and the shutdown at
// most shutdownWait. raft's
// Shutdown waits for its goroutines, and one replicating to a peer that
// stopped answering (paused, or cut off) waits out the transport's timeout
// first; the proposer waits for futures that raft may never answer once it
// is shut down. Past shutdownWait Run returns, and the log is closed in the
// background if raft finishes later.
func (n *Node) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	packCtx, stopPack := context.WithCancel(context.Background())
	wg.Add(3)
	go func() { defer wg.Done(); n.prop.packLoop(packCtx) }()
	go func() { defer wg.Done(); n.prop.waitLoop() }()
	go func() { defer wg.Done(); n.watchLeadership(packCtx) }()

	<-ctx.Done()
	if n.raft.State() == raft.Leader && n.voters() > 1 {
		wait := min(max(3*n.cfg.ElectionTimeout, time.Second), maxTransferWait)
		if err := n.transferLeadership(wait); err != nil {
			n.cfg.Logger.Warn("leadership transfer before shutdown", "error", err)
		} else {
			n.cfg.Logger.Info("leadership transferred before shutdown")
		}
	}
	stopPack()
	stopped := make(chan error, 1)
	go func() {
		err := n.raft.Shutdown().Error()
		wg.Wait()
		stopped <- err
	}()
	closeLog := func(err error) error {
		if nt, ok := n.trans.(*raft.NetworkTransport); ok {
			nt.Close()
		}
		if cerr := n.wal.Close(); err == nil {
			err = cerr
		}
		if cerr := n.meta.Close(); err == nil {
			err = cerr
		}
		return err
	}
	var err error
	t := time.NewTimer(shutdownWait)
	defer t.Stop()
	select {
	case err = <-stopped:
		err = closeLog(err)
	case <-t.C:
		n.cfg.Logger.Warn("raft shutdown unfinished; closing the log when it ends", "waited", shutdownWait)
		go func() {
			if err := closeLog(<-stopped); err != nil {
				n.cfg.Logger.Warn("closing the raft log after a late shutdown", "error", err)
			}
		}()
	}
	n.leaderMu.Lock()
	for _, c := range n.leaderSub {
		close(c)
	}
	n.leaderSub = nil
	n.leaderMu.Unlock()
	return err
}

func (n *Node) watchLeadership(ctx context.Context) {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	last := false
	publish := func() {
		now := n.raft.State() == raft.Leader
		if now == last {
			return
		}
		last = now
		n.leaderMu.Lock()
		defer n.leaderMu.Unlock()
		for _, c := range n.leaderSub {
			// Subscribers hold a buffer of one; replace a stale value so the
			// latest state always gets through.
			select {
			case <-c:
			default:
			}
			c <- now
		}
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ch:
			publish()
		case <-tick.C:
			// Observations can be dropped under load; the tick catches up.
			publish()
		case <-ctx.Done():
			return
		}
	}
}

// Leadership returns a channel that receives true when this node becomes
// leader and false when it stops being leader. Only the latest value is
// kept. The channel closes when Run returns.
func (n *Node) Leadership() <-chan bool {
	c := make(chan bool, 1)
	n.leaderMu.Lock()
	n.leaderSub = append(n.leaderSub, c)
	n.leaderMu.Unlock()
	return c
}

// Update prepares a transaction with fn against the local state and commits
// it through the batched proposer, returning once it is applied locally.
// It fails with ErrNotLeader on a follower.
func (n *Node) Update(ctx context.Context, fn func(tx *state.Tx) error) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	txn, err := n.st.Prepare(time.Now(), fn)
	if err != nil {
		return err
	}
	if txn == nil || len(txn.Actions) == 0 {
		return nil
	}
	return n.prop.propose(ctx, txn)
}

// Propose commits an already prepared transaction.
func (n *Node) Propose(ctx context.Context, txn *raftv1.Transaction) error {
	return n.prop.propose(ctx, txn)
}

// Store returns the state store this node applies to.
func (n *Node) Store() *state.Store { return n.st }

// IsLeader reports whether this node is the Raft leader now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the current leader's node ID and Raft address, or empty
// strings when there is none.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// Barrier waits until every entry committed before the call is applied to
// the local state. A new leader calls it before it trusts its state.
func (n *Node) Barrier(ctx context.Context) error {
	timeout := 30 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	return n.raft.Barrier(timeout).Error()
}

// Member is one server of the Raft group.
type Member struct {
	NodeID string
	Addr   string
	Voter  bool
}

// Members returns the latest Raft configuration.
func (n *Node) Members() ([]Member, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	var out []Member
	for _, s := range f.Configuration().Servers {
		out = append(out, Member{NodeID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

func (n *Node) voters() int {
	ms, err := n.Members()
	if err != nil {
		return 0
	}
	v := 0
	for _, m := range ms {
		if m.Voter {
			v++
		}
	}
	return v
}

// AddVoter adds (or re-addresses) a voting member. Leader only.
func (n *Node) AddVoter(ctx context.Context, nodeID, addr string) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	// A manager that asks again while it is already a voter at that
	// address (it only lost sight of the leader) changes nothing: no
	// configuration entry is appended.
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.ID == raft.ServerID(nodeID) && s.Address == raft.ServerAddress(addr) && s.Suffrage == raft.Voter {
				return nil
			}
		}
	}
	return n.raft.AddVoter(raft.ServerID(nodeID), raft.ServerAddress(addr), 0, timeoutOf(ctx)).Error()
}

// RemoveMember removes a member from the group. Leader only. Removing the
// leader itself makes it step down once the change commits.
func (n *Node) RemoveMember(ctx context.Context, nodeID string) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	ms, err := n.Members()
	if err != nil {
		return err
	}
	found := false
	for _, m := range ms {
		found = found || m.NodeID == nodeID
	}
	if !found {
		return fmt.Errorf("raft member %s: %w", nodeID, sdk.ErrNotFound)
	}
	return n.raft.RemoveServer(raft.ServerID(nodeID), 0, timeoutOf(ctx)).Error()
}

func timeoutOf(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return 30 * time.Second
}

// Snapshot forces a snapshot now (operators, tests).
func (n *Node) Snapshot() error { return n.raft.Snapshot().Error() }

// Stats are the proposer's counters since start.
type Stats struct {
	// Entries is the number of log entries proposed.
	Entries uint64
	// Transactions is the number of transactions packed into them.
	Transactions uint64
	// Bytes is the encoded size of the entries.
	Bytes uint64
	// AppliedIndex is the Raft index the local state reflects.
	AppliedIndex uint64
}

// Stats returns the proposer's counters.
func (n *Node) Stats() Stats {
	return Stats{
		Entries:      n.stats.entries.Load(),
		Transactions: n.stats.txns.Load(),
		Bytes:        n.stats.bytes.Load(),
		AppliedIndex: n.appliedIndex(),
	}
}

// appliedIndex is the Raft index the local state reflects. raft's own
// AppliedIndex moves when entries are handed to the FSM, before they are
// applied; readers of the state want this one.
func (n *Node) appliedIndex() uint64 {
	var i uint64
	n.st.View(func(tx *state.ReadTx) { i = tx.Index() })
	return i
}

type proposerStats struct {
	entries, txns, bytes atomic.Uint64
}

func (s *proposerStats) entry(txns, bytes int) {
	s.entries.Add(1)
	s.txns.Add(uint64(txns))
	s.bytes.Add(uint64(bytes))
}
