package manager

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// registerInterval is how often a manager checks that the replicated
// record of itself (role, addresses, status) is current. It is a local read;
// a write happens only when something changed, e.g. after a restart with new
// addresses.
const registerInterval = 2 * time.Second

// errNoLeaderKnown: this manager knows no leader to send its record to.
var errNoLeaderKnown = errors.New("no leader known")

// registerSelf writes this manager's own node record when it leads.
func (m *Manager) registerSelf(ctx context.Context) error {
	raftAddr, err := m.cfg.Manager.AdvertiseRaft()
	if err != nil {
		return err
	}
	hostname, err := m.cfg.Node.Name()
	if err != nil {
		return err
	}
	want := &objectv1.ManagerStatus{RaftAddr: raftAddr, ApiAddr: m.apiAddr, Weight: defaultManagerWeight}
	return m.raft.Update(ctx, func(tx *state.Tx) error {
		n := tx.Node(m.NodeID())
		if n == nil {
			return tx.CreateNode(&objectv1.Node{
				Id:   m.NodeID(),
				Role: objectv1.NodeRole_NODE_ROLE_MANAGER,
				Spec: &objectv1.NodeSpec{
					DesiredRole:  objectv1.NodeRole_NODE_ROLE_MANAGER,
					Availability: objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE,
				},
				Description:   m.description(hostname),
				Status:        &objectv1.NodeStatus{State: objectv1.NodeState_NODE_STATE_READY, Addr: m.apiAddr},
				ManagerStatus: want,
			})
		}
		ms := n.GetManagerStatus()
		if ms.GetRaftAddr() == want.RaftAddr && ms.GetApiAddr() == want.ApiAddr &&
			n.GetStatus().GetState() == objectv1.NodeState_NODE_STATE_READY && n.GetRole() == objectv1.NodeRole_NODE_ROLE_MANAGER {
			return nil
		}
		next := proto.Clone(n).(*objectv1.Node)
		next.Role = objectv1.NodeRole_NODE_ROLE_MANAGER
		if ms != nil {
			want.Weight = ms.GetWeight()
		}
		next.ManagerStatus = want
		next.Status = &objectv1.NodeStatus{State: objectv1.NodeState_NODE_STATE_READY, Addr: m.apiAddr}
		return tx.UpdateNode(next)
	})
}

func (m *Manager) description(hostname string) *objectv1.NodeDescription {
	return &objectv1.NodeDescription{Hostname: hostname, Platform: platform(), EngineVersion: Version}
}

// leaderlessRejoin is how long a follower goes without knowing a leader
// before it asks its peers to (re-)add it to the Raft group although its
// own record looks current. A manager that was stopped or cut off while it
// was demoted never receives the entries that demoted and removed it: its
// replica still calls it a manager of the group, it campaigns alone (the
// others refuse its votes as "not in configuration") and it would never
// ask. Six seconds is several election timeouts: a cluster electing a new
// leader has one long before.
const leaderlessRejoin = 3 * registerInterval

// registerLoop keeps a follower's record current by asking the leader to
// (re-)add it to the Raft group with its current addresses. A manager that
// just joined with a token does this through the configured join addresses,
// since it knows no leader until it is part of the group.
func (m *Manager) registerLoop(ctx context.Context) error {
	raftAddr, err := m.cfg.Manager.AdvertiseRaft()
	if err != nil {
		return err
	}
	req := &raftv1.JoinRequest{RaftAddr: raftAddr, ApiAddr: m.apiAddr}
	needJoin := m.ident.joined
	tick := time.NewTicker(registerInterval)
	defer tick.Stop()
	leaderSeen := time.Now()
	for {
		leaderID, _ := m.raft.Leader()
		if leaderID != "" || m.raft.IsLeader() {
			leaderSeen = time.Now()
		}
		leaderless := time.Since(leaderSeen) >= leaderlessRejoin
		if needJoin {
			if err := m.joinThroughSeeds(ctx, req); err != nil {
				m.log.Warn("joining the raft group", "error", err)
			} else {
				needJoin = false
				m.log.Info("joined the raft group")
			}
		} else if !m.raft.IsLeader() && (leaderless || m.recordStale(req) || m.secrets.Get() == nil) {
			// A manager without the secrets key (one from before secrets,
			// or whose key file was lost) asks too: Join answers with it.
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			var conn *grpc.ClientConn
			err := errNoLeaderKnown
			if leaderID != "" {
				// Waiting for one when none is known would only delay the
				// peers' help by the dialer's whole wait.
				conn, err = m.leader.LeaderConn(cctx)
			}
			if err == nil {
				var resp *raftv1.JoinResponse
				if resp, err = raftv1.NewMembershipClient(conn).Join(cctx, req); err == nil {
					m.adoptSecretsKey(resp.GetSecretsKey())
				}
			} else if jerr := m.joinThroughPeers(cctx, req); jerr == nil {
				// No leader known here: any other manager forwards the
				// request to the one that leads.
				err = nil
			} else {
				err = fmt.Errorf("%w; through peers: %w", err, jerr)
			}
			cancel()
			if err != nil && ctx.Err() == nil {
				if leaderless {
					m.log.Warn("no leader known; asking to rejoin the raft group", "for", time.Since(leaderSeen).Round(time.Second), "error", err)
				} else {
					m.log.Debug("refreshing manager record", "error", err)
				}
			} else if err == nil && leaderless {
				m.log.Info("asked a peer to re-add this manager to the raft group", "leaderless_for", time.Since(leaderSeen).Round(time.Second))
				leaderSeen = time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (m *Manager) recordStale(req *raftv1.JoinRequest) bool {
	var n *objectv1.Node
	m.st.View(func(tx *state.ReadTx) { n = tx.Node(m.NodeID()) })
	if n == nil {
		// Not replicated to us yet, or we were removed: only the leader can
		// tell, and Join asks it.
		return true
	}
	ms := n.GetManagerStatus()
	return n.GetRole() != objectv1.NodeRole_NODE_ROLE_MANAGER || ms.GetRaftAddr() != req.RaftAddr || ms.GetApiAddr() != req.ApiAddr ||
		n.GetStatus().GetState() != objectv1.NodeState_NODE_STATE_READY
}

// peerAPIAddrs returns the API addresses of the other managers this
// node's replica records, sorted.
func (m *Manager) peerAPIAddrs() []string {
	var addrs []string
	m.st.View(func(tx *state.ReadTx) {
		for _, n := range tx.Nodes() {
			if a := n.GetManagerStatus().GetApiAddr(); a != "" && n.GetId() != m.NodeID() {
				addrs = append(addrs, a)
			}
		}
	})
	slices.Sort(addrs)
	return addrs
}

// joinThroughPeers asks the other managers this node knows of, in turn, to
// (re-)add it; each forwards to the leader. It knows them from its replica,
// from the list it last saved (a restarted manager's replica holds only its
// last snapshot until a leader reaches it, which for a manager removed
// while it was down never happens) and from its join addresses.
func (m *Manager) joinThroughPeers(ctx context.Context, req *raftv1.JoinRequest) error {
	addrs := m.peerAPIAddrs()
	saved, err := loadPeers(m.peersFile())
	if err != nil {
		m.log.Warn("reading the saved manager list", "error", err)
	}
	for _, a := range append(saved, m.cfg.Join.Addrs...) {
		if a != m.apiAddr && !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	last := errors.New("no other manager known")
	for _, addr := range addrs {
		conn, err := dialManager(addr, m.ident.id)
		if err != nil {
			last = err
			continue
		}
		resp, err := raftv1.NewMembershipClient(conn).Join(ctx, req)
		conn.Close()
		if err == nil {
			m.adoptSecretsKey(resp.GetSecretsKey())
			return nil
		}
		last = fmt.Errorf("%s: %w", addr, err)
	}
	return last
}

func (m *Manager) joinThroughSeeds(ctx context.Context, req *raftv1.JoinRequest) error {
	var last error
	for _, addr := range m.cfg.Join.Addrs {
		conn, err := dialManager(addr, m.ident.id)
		if err != nil {
			last = err
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		resp, err := raftv1.NewMembershipClient(conn).Join(cctx, req)
		cancel()
		conn.Close()
		if err == nil {
			m.adoptSecretsKey(resp.GetSecretsKey())
			return nil
		}
		last = fmt.Errorf("%s: %w", addr, err)
	}
	return last
}

// anyManagerConn returns a connection to this manager's own API, which
// serves certificate renewals locally.
func (m *Manager) anyManagerConn(ctx context.Context) (*grpc.ClientConn, error) {
	return m.leader.conn(m.apiAddr)
}
