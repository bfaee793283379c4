package controlapi

import (
	"context"
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func (s *Server) GetNode(ctx context.Context, req *controlv1.GetNodeRequest) (*controlv1.GetNodeResponse, error) {
	resp := &controlv1.GetNodeResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_GetNode_FullMethodName, req, resp); fwd {
		return resp, err
	}
	if req.GetRef() == "" {
		return nil, grpcErr(refRequired())
	}
	var err error
	if rerr := s.read(ctx, func(tx *state.ReadTx) { resp.Node, err = tx.LookupNode(req.GetRef()) }); rerr != nil {
		return nil, grpcErr(rerr)
	}
	if err != nil {
		return nil, grpcErr(err)
	}
	leaderID, _ := s.raft.Leader()
	resp.Leader = resp.Node.Id == leaderID
	return resp, nil
}

func (s *Server) ListNodes(ctx context.Context, req *controlv1.ListNodesRequest) (*controlv1.ListNodesResponse, error) {
	resp := &controlv1.ListNodesResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_ListNodes_FullMethodName, req, resp); fwd {
		return resp, err
	}
	roles := map[objectv1.NodeRole]bool{}
	for _, r := range req.GetRoles() {
		roles[r] = true
	}
	avail := map[objectv1.NodeAvailability]bool{}
	for _, a := range req.GetAvailabilities() {
		avail[a] = true
	}
	err := s.read(ctx, func(tx *state.ReadTx) {
		for _, n := range tx.Nodes() {
			if (len(roles) == 0 || roles[n.GetRole()]) && (len(avail) == 0 || avail[n.GetSpec().GetAvailability()]) {
				resp.Nodes = append(resp.Nodes, n)
			}
		}
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	sort.SliceStable(resp.Nodes, func(i, j int) bool { return nodeName(resp.Nodes[i]) < nodeName(resp.Nodes[j]) })
	resp.LeaderId, _ = s.raft.Leader()
	return resp, nil
}

func nodeName(n *objectv1.Node) string {
	if name := n.GetSpec().GetAnnotations().GetName(); name != "" {
		return name
	}
	return n.GetDescription().GetHostname()
}

func (s *Server) UpdateNode(ctx context.Context, req *controlv1.UpdateNodeRequest) (*controlv1.UpdateNodeResponse, error) {
	resp := &controlv1.UpdateNodeResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_UpdateNode_FullMethodName, req, resp); fwd {
		return resp, err
	}
	var fe sdk.FieldErrors
	if req.GetRef() == "" {
		fe.Add("ref", "is required: a node ID, ID prefix or name")
	}
	if req.GetVersion() == 0 {
		fe.Add("version", "is required: the meta.version of the node as read")
	}
	if req.GetSpec() == nil {
		fe.Add("spec", "is required")
	}
	if err := fe.Err(); err != nil {
		return nil, grpcErr(err)
	}
	if err := ValidateNodeSpec(req.GetSpec()); err != nil {
		return nil, grpcErr(err)
	}
	var (
		id      string
		demoted bool
	)
	w, err := s.update(ctx, func(tx *state.Tx) error {
		cur, err := tx.LookupNode(req.GetRef())
		if err != nil {
			return err
		}
		id = cur.Id
		if cur.GetMeta().GetVersion() != req.GetVersion() {
			return versionConflict("node", req.GetRef(), cur.GetMeta().GetVersion(), req.GetVersion())
		}
		next := proto.Clone(cur).(*objectv1.Node)
		next.Spec = proto.Clone(req.GetSpec()).(*objectv1.NodeSpec)
		if next.Spec.DesiredRole == objectv1.NodeRole_NODE_ROLE_UNSPECIFIED {
			next.Spec.DesiredRole = cur.GetSpec().GetDesiredRole()
		}
		if next.Spec.Availability == objectv1.NodeAvailability_NODE_AVAILABILITY_UNSPECIFIED {
			next.Spec.Availability = cur.GetSpec().GetAvailability()
		}
		if cur.GetRole() == objectv1.NodeRole_NODE_ROLE_MANAGER && next.Spec.DesiredRole == objectv1.NodeRole_NODE_ROLE_WORKER {
			managers := 0
			for _, n := range tx.Nodes() {
				if n.GetRole() == objectv1.NodeRole_NODE_ROLE_MANAGER {
					managers++
				}
			}
			if managers <= 1 {
				return fmt.Errorf("node %s is the last manager; promote another node first: %w", req.GetRef(), sdk.ErrFailedPrecondition)
			}
			// A demoted manager leaves the Raft group now; its certificate
			// carries the worker role from its next renewal.
			next.Role = objectv1.NodeRole_NODE_ROLE_WORKER
			next.ManagerStatus = nil
			demoted = true
		}
		return tx.UpdateNode(next)
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	if w.Replayed {
		// The first attempt applied; it may have lost its leader before
		// taking the demoted manager out of the Raft group.
		id = w.ObjectID
		s.view(func(tx *state.ReadTx) {
			n := tx.Node(id)
			demoted = n != nil && n.GetRole() == objectv1.NodeRole_NODE_ROLE_WORKER && req.GetSpec().GetDesiredRole() == objectv1.NodeRole_NODE_ROLE_WORKER
		})
	}
	if demoted {
		if err := s.raft.RemoveMember(ctx, id); err != nil && !isNotFound(err) {
			return nil, grpcErr(fmt.Errorf("node %s demoted but still in the raft group (retry the demotion): %w", id, err))
		}
		s.log.Info("manager demoted", "node_id", id)
	}
	s.view(func(tx *state.ReadTx) { resp.Node = tx.Node(id) })
	return resp, nil
}

func (s *Server) RemoveNode(ctx context.Context, req *controlv1.RemoveNodeRequest) (*controlv1.RemoveNodeResponse, error) {
	resp := &controlv1.RemoveNodeResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_RemoveNode_FullMethodName, req, resp); fwd {
		return resp, err
	}
	if req.GetRef() == "" {
		return nil, grpcErr(refRequired())
	}
	var id string
	w, err := s.update(ctx, func(tx *state.Tx) error {
		cur, err := tx.LookupNode(req.GetRef())
		if err != nil {
			return err
		}
		id = cur.Id
		if cur.GetRole() == objectv1.NodeRole_NODE_ROLE_MANAGER {
			return fmt.Errorf("node %s is a manager: demote it first (shoal node demote %s): %w", req.GetRef(), req.GetRef(), sdk.ErrFailedPrecondition)
		}
		if cur.GetStatus().GetState() == objectv1.NodeState_NODE_STATE_READY && !req.GetForce() {
			return fmt.Errorf("node %s is up: stop it first, or use --force: %w", req.GetRef(), sdk.ErrFailedPrecondition)
		}
		return tx.DeleteNode(cur.Id)
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	if w.Replayed {
		id = w.ObjectID
	}
	s.log.Info("node removed", "node_id", id)
	return resp, nil
}
