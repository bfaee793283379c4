package manager

import (
	"context"
	"fmt"
	"time"

	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/kernel/raftstore"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	cav1 "github.com/shoalhq/shoal/sdk/proto/shoal/ca/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// registrar gives the CA server the replicated store.
type registrar struct {
	raft *raftstore.Node
	st   *state.Store
}

var _ ca.Registrar = (*registrar)(nil)

func (r *registrar) Root() (*objectv1.RootCA, string, time.Duration, error) {
	var c *objectv1.Cluster
	r.st.View(func(tx *state.ReadTx) { c = tx.Cluster() })
	if c == nil || c.GetRootCa() == nil {
		return nil, "", 0, fmt.Errorf("cluster not initialized yet: %w", sdk.ErrUnavailable)
	}
	ttl := c.GetSpec().GetCa().GetNodeCertExpiry().AsDuration()
	if ttl <= 0 {
		ttl = defaultCertTTL
	}
	return c.GetRootCa(), c.Id, ttl, nil
}

// defaultCertTTL is used when the cluster spec has none: 90 days, as in the
// cluster defaults.
const defaultCertTTL = 2160 * time.Hour

func (r *registrar) RegisterNode(ctx context.Context, node *objectv1.Node) error {
	return r.raft.Update(ctx, func(tx *state.Tx) error { return tx.CreateNode(node) })
}

func (r *registrar) NodeRole(nodeID string) (objectv1.NodeRole, error) {
	var n *objectv1.Node
	r.st.View(func(tx *state.ReadTx) { n = tx.Node(nodeID) })
	if n == nil {
		return objectv1.NodeRole_NODE_ROLE_UNSPECIFIED, fmt.Errorf("node %s: %w", nodeID, sdk.ErrNotFound)
	}
	return n.GetSpec().GetDesiredRole(), nil
}

// nodeCA serves cav1.NodeCA. Issuing registers a node, a Raft write, so a
// follower forwards it to the leader (the request carries everything: the
// caller has no certificate to lose on the way). Renewal only signs, which
// every manager can do, and it must see the caller's own certificate, so it
// is served locally.
type nodeCA struct {
	cav1.UnimplementedNodeCAServer

	inner  *ca.Server
	raft   *raftstore.Node
	leader *leaderDialer
}

func (n *nodeCA) IssueNodeCertificate(ctx context.Context, req *cav1.IssueNodeCertificateRequest) (*cav1.IssueNodeCertificateResponse, error) {
	if n.raft.IsLeader() {
		return n.inner.IssueNodeCertificate(ctx, req)
	}
	conn, err := n.leader.LeaderConn(ctx)
	if err != nil {
		return nil, sdk.ToGRPC(err)
	}
	return cav1.NewNodeCAClient(conn).IssueNodeCertificate(ctx, req)
}

func (n *nodeCA) RenewNodeCertificate(ctx context.Context, req *cav1.RenewNodeCertificateRequest) (*cav1.RenewNodeCertificateResponse, error) {
	return n.inner.RenewNodeCertificate(ctx, req)
}
