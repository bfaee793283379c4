package controlapi

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// redact returns c without its CA key and gossip key: they never leave the
// managers' state, whoever asks (workers get the gossip key over their
// sessions only).
func redact(c *objectv1.Cluster) *objectv1.Cluster {
	if c == nil {
		return nil
	}
	out := proto.Clone(c).(*objectv1.Cluster)
	out.GossipKey = nil
	if out.RootCa != nil {
		out.RootCa.KeyPem = nil
	}
	return out
}

func (s *Server) GetCluster(ctx context.Context, req *controlv1.GetClusterRequest) (*controlv1.GetClusterResponse, error) {
	resp := &controlv1.GetClusterResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_GetCluster_FullMethodName, req, resp); fwd {
		return resp, err
	}
	if err := s.read(ctx, func(tx *state.ReadTx) { resp.Cluster = redact(tx.Cluster()) }); err != nil {
		return nil, grpcErr(err)
	}
	if resp.Cluster == nil {
		return nil, grpcErr(fmt.Errorf("%w: %w", errNoState, sdk.ErrUnavailable))
	}
	resp.LeaderId, _ = s.raft.Leader()
	return resp, nil
}

func (s *Server) UpdateCluster(ctx context.Context, req *controlv1.UpdateClusterRequest) (*controlv1.UpdateClusterResponse, error) {
	resp := &controlv1.UpdateClusterResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_UpdateCluster_FullMethodName, req, resp); fwd {
		return resp, err
	}
	if req.GetVersion() == 0 {
		return nil, grpcErr(sdk.FieldErrors{{Field: "version", Message: "is required: the meta.version of the cluster as read"}})
	}
	var spec *objectv1.ClusterSpec
	if req.GetSpec() != nil {
		spec = proto.Clone(req.GetSpec()).(*objectv1.ClusterSpec)
		ApplyClusterDefaults(spec)
		if err := ValidateClusterSpec(spec); err != nil {
			return nil, grpcErr(err)
		}
	}
	_, err := s.update(ctx, func(tx *state.Tx) error {
		cur := tx.Cluster()
		if cur == nil {
			return fmt.Errorf("%w: %w", errNoState, sdk.ErrUnavailable)
		}
		if cur.GetMeta().GetVersion() != req.GetVersion() {
			return versionConflict("cluster", cur.Id, cur.GetMeta().GetVersion(), req.GetVersion())
		}
		next := proto.Clone(cur).(*objectv1.Cluster)
		if spec != nil {
			next.Spec = mergeClusterSpec(cur.GetSpec(), req.GetSpec(), spec)
		}
		if req.GetRotateWorkerToken() || req.GetRotateManagerToken() {
			if next.RootCa == nil {
				return errors.New("cluster has no root CA")
			}
			if next.RootCa.JoinTokens == nil {
				next.RootCa.JoinTokens = &objectv1.JoinTokens{}
			}
			rotate := func(dst *string) error {
				tok, err := ca.NewJoinToken(next.RootCa.Digest)
				if err != nil {
					return err
				}
				*dst = tok
				return nil
			}
			if req.GetRotateWorkerToken() {
				if err := rotate(&next.RootCa.JoinTokens.Worker); err != nil {
					return err
				}
			}
			if req.GetRotateManagerToken() {
				if err := rotate(&next.RootCa.JoinTokens.Manager); err != nil {
					return err
				}
			}
		}
		return tx.UpdateCluster(next)
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	s.view(func(tx *state.ReadTx) { resp.Cluster = redact(tx.Cluster()) })
	if req.GetRotateWorkerToken() || req.GetRotateManagerToken() {
		s.log.Info("join tokens rotated", "worker", req.GetRotateWorkerToken(), "manager", req.GetRotateManagerToken())
	}
	return resp, nil
}

func isNotFound(err error) bool { return errors.Is(err, sdk.ErrNotFound) }

// mergeClusterSpec keeps the sections a request left unset at their current
// values rather than resetting them to defaults: an operator changing the
// heartbeat period must not silently reset the certificate lifetime.
// defaulted is the request's spec after defaults and validation.
func mergeClusterSpec(cur, req, defaulted *objectv1.ClusterSpec) *objectv1.ClusterSpec {
	out := proto.Clone(defaulted).(*objectv1.ClusterSpec)
	if req.GetAnnotations() == nil && cur.GetAnnotations() != nil {
		out.Annotations = cur.GetAnnotations()
	}
	if req.GetDispatcher() == nil && cur.GetDispatcher() != nil {
		out.Dispatcher = cur.GetDispatcher()
	}
	if req.GetCa() == nil && cur.GetCa() != nil {
		out.Ca = cur.GetCa()
	}
	if req.GetOrchestration() == nil && cur.GetOrchestration() != nil {
		out.Orchestration = cur.GetOrchestration()
	}
	return out
}
