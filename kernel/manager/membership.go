package manager

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/kernel/raftstore"
	"github.com/shoalhq/shoal/kernel/secrets"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// forwardedForKey carries the node ID of the original caller when a
// follower forwards a Membership call to the leader. The leader trusts it
// only from a peer holding a manager certificate.
const forwardedForKey = "shoal-forwarded-for"

// membership serves raftv1.Membership: managers joining the Raft group.
type membership struct {
	raftv1.UnimplementedMembershipServer

	raft   *raftstore.Node
	st     *state.Store
	leader *leaderDialer
	log    *slog.Logger
	// secrets is handed to joining managers; saveKey writes a key the
	// leader had to make (leaderSecretsKey).
	secrets *secrets.Holder
	saveKey func([]byte) error
}

// caller returns the node ID a Membership call acts for.
func caller(ctx context.Context) (string, error) {
	p, err := ca.PeerFromContext(ctx)
	if err != nil {
		return "", err
	}
	if p.Role != objectv1.NodeRole_NODE_ROLE_MANAGER {
		return "", fmt.Errorf("membership needs a manager certificate: %w", sdk.ErrPermissionDenied)
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(forwardedForKey); len(v) == 1 && v[0] != "" {
			return v[0], nil
		}
	}
	return p.NodeID, nil
}

func (m *membership) Join(ctx context.Context, req *raftv1.JoinRequest) (*raftv1.JoinResponse, error) {
	nodeID, err := caller(ctx)
	if err != nil {
		return nil, sdk.ToGRPC(err)
	}
	var fe sdk.FieldErrors
	for field, addr := range map[string]string{"raft_addr": req.GetRaftAddr(), "api_addr": req.GetApiAddr()} {
		if host, port, err := net.SplitHostPort(addr); err != nil || host == "" || port == "" {
			fe.Add(field, "must be host:port, got %q", addr)
		} else if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			fe.Add(field, "must be routable, got %q", addr)
		}
	}
	if err := fe.Err(); err != nil {
		return nil, sdk.ToGRPC(err)
	}
	if !m.raft.IsLeader() {
		conn, err := m.leader.LeaderConn(ctx)
		if err != nil {
			return nil, sdk.ToGRPC(err)
		}
		out := metadata.AppendToOutgoingContext(ctx, forwardedForKey, nodeID)
		return raftv1.NewMembershipClient(conn).Join(out, req)
	}
	// The node must exist as a manager: its certificate alone could be
	// stale (demoted or removed since it was issued).
	err = m.raft.Update(ctx, func(tx *state.Tx) error {
		n := tx.Node(nodeID)
		if n == nil {
			return fmt.Errorf("node %s: removed from the cluster: %w", nodeID, sdk.ErrPermissionDenied)
		}
		if n.GetSpec().GetDesiredRole() != objectv1.NodeRole_NODE_ROLE_MANAGER {
			return fmt.Errorf("node %s is not a manager: %w", nodeID, sdk.ErrPermissionDenied)
		}
		ms := n.GetManagerStatus()
		if n.GetRole() == objectv1.NodeRole_NODE_ROLE_MANAGER && ms.GetRaftAddr() == req.GetRaftAddr() && ms.GetApiAddr() == req.GetApiAddr() &&
			n.GetStatus().GetState() == objectv1.NodeState_NODE_STATE_READY {
			return nil
		}
		next := proto.Clone(n).(*objectv1.Node)
		next.Role = objectv1.NodeRole_NODE_ROLE_MANAGER
		weight := ms.GetWeight()
		if ms == nil {
			weight = defaultManagerWeight
		}
		next.ManagerStatus = &objectv1.ManagerStatus{RaftAddr: req.GetRaftAddr(), ApiAddr: req.GetApiAddr(), Weight: weight}
		next.Status = &objectv1.NodeStatus{State: objectv1.NodeState_NODE_STATE_READY, Addr: req.GetApiAddr()}
		return tx.UpdateNode(next)
	})
	if err != nil {
		return nil, sdk.ToGRPC(err)
	}
	if err := m.raft.AddVoter(ctx, nodeID, req.GetRaftAddr()); err != nil {
		return nil, sdk.ToGRPC(fmt.Errorf("add raft voter %s: %w", nodeID, err))
	}
	m.log.Info("manager joined raft", "node_id", nodeID, "raft_addr", req.GetRaftAddr())
	members, err := m.raft.Members()
	if err != nil {
		return nil, sdk.ToGRPC(err)
	}
	resp := &raftv1.JoinResponse{}
	// Every manager may lead, and a leader seals and opens secrets: each
	// gets the key with its Join, over mutual TLS with a manager
	// certificate (the policy admits no other).
	if k, err := leaderSecretsKey(m.secrets, m.st, m.saveKey); err != nil {
		m.log.Warn("no secrets key to hand to a joining manager", "node_id", nodeID, "error", err)
	} else {
		resp.SecretsKey = k.Key()
	}
	for _, mem := range members {
		resp.Members = append(resp.Members, &raftv1.RaftMember{NodeId: mem.NodeID, RaftAddr: mem.Addr, Voter: mem.Voter})
	}
	return resp, nil
}

func (m *membership) Leave(ctx context.Context, req *raftv1.LeaveRequest) (*raftv1.LeaveResponse, error) {
	nodeID, err := caller(ctx)
	if err != nil {
		return nil, sdk.ToGRPC(err)
	}
	if !m.raft.IsLeader() {
		conn, err := m.leader.LeaderConn(ctx)
		if err != nil {
			return nil, sdk.ToGRPC(err)
		}
		out := metadata.AppendToOutgoingContext(ctx, forwardedForKey, nodeID)
		return raftv1.NewMembershipClient(conn).Leave(out, req)
	}
	if err := m.raft.RemoveMember(ctx, nodeID); err != nil {
		return nil, sdk.ToGRPC(err)
	}
	m.log.Info("manager left raft", "node_id", nodeID)
	return &raftv1.LeaveResponse{}, nil
}

// defaultManagerWeight is the weight a manager gets in workers' manager
// lists until an operator changes it.
const defaultManagerWeight = 10

// dialManager opens a client connection to a manager's API over mutual TLS.
// Reconnects back off from 100ms to 2s: managers come back within seconds
// of a restart, and a forwarded call waits on this.
func dialManager(addr string, id *ca.Identity) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr,
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(sdk.MaxMessageBytes)),
		grpc.WithTransportCredentials(credentials.NewTLS(id.ClientTLS())),
		// A leader that vanished without closing its connections (a cut
		// network) is noticed within 15 s, and relayed workers move on.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 2 * time.Second,
		}),
	)
}
