package controlapi

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// Volumes asks nodes about their executors' named volumes;
// dispatch.Service implements it on every manager and serves it while the
// manager leads (kernel/dispatch/volumes.go).
type Volumes interface {
	VolumeRequest(ctx context.Context, nodeID string, op workerv1.VolumeOp, name string) ([]*objectv1.VolumeInfo, error)
}

// WithVolumes makes the server answer ListVolumes and RemoveVolume
// through v. Without it, both fail with Unavailable on the leader.
func WithVolumes(v Volumes) Option { return func(s *Server) { s.volumes = v } }

// maxVolumeFanout bounds the nodes a ListVolumes asks at a time.
const maxVolumeFanout = 64

// validVolumeName checks a volume name with the rules of a volume
// mount's source (validate.go).
func validVolumeName(fe *sdk.FieldErrors, field, name string) {
	switch {
	case name == "":
		fe.Add(field, "is required")
	case len(name) > maxVolumeNameLen:
		fe.Add(field, "must be a volume name of at most %d characters, got %d", maxVolumeNameLen, len(name))
	case !volumeNameRE.MatchString(name):
		fe.Add(field, "must be a volume name: letters, digits and _ . - starting with a letter or digit, got %s", quote(name))
	}
}

func (s *Server) ListVolumes(ctx context.Context, req *controlv1.ListVolumesRequest) (*controlv1.ListVolumesResponse, error) {
	resp := &controlv1.ListVolumesResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_ListVolumes_FullMethodName, req, resp); fwd {
		return resp, err
	}
	if len(req.GetNode()) > maxRefLen {
		return nil, grpcErr(sdk.FieldErrors{{Field: "node", Message: fmt.Sprintf("must be at most %d bytes, got %d", maxRefLen, len(req.GetNode()))}})
	}
	if s.volumes == nil {
		return nil, grpcErr(fmt.Errorf("volumes: not served by this manager: %w", sdk.ErrUnavailable))
	}
	var (
		nodes []*objectv1.Node
		err   error
	)
	rerr := s.read(ctx, func(tx *state.ReadTx) {
		if req.GetNode() != "" {
			var n *objectv1.Node
			if n, err = tx.LookupNode(req.GetNode()); err == nil {
				nodes = append(nodes, n)
			}
			return
		}
		for _, n := range tx.Nodes() {
			if n.GetStatus().GetState() == objectv1.NodeState_NODE_STATE_READY {
				nodes = append(nodes, n)
			}
		}
	})
	if rerr != nil {
		return nil, grpcErr(rerr)
	}
	if err != nil {
		return nil, grpcErr(err)
	}

	// Every node is asked at once (at most maxVolumeFanout at a time): a
	// silent node costs the call its timeout, not one per node.
	type answer struct {
		vols []*objectv1.VolumeInfo
		err  error
	}
	answers := make([]answer, len(nodes))
	sem := make(chan struct{}, maxVolumeFanout)
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			answers[i].vols, answers[i].err = s.volumes.VolumeRequest(ctx, n.GetId(), workerv1.VolumeOp_VOLUME_OP_LIST, "")
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, grpcErr(err)
	}
	for i, n := range nodes {
		if a := answers[i]; a.err != nil {
			resp.Errors = append(resp.Errors, &controlv1.VolumeNodeError{NodeId: n.GetId(), Hostname: n.GetDescription().GetHostname(), Error: a.err.Error()})
			continue
		}
		resp.Volumes = append(resp.Volumes, answers[i].vols...)
	}
	if req.GetNode() != "" && len(resp.Errors) == 1 {
		// One node asked: its failure is the call's.
		return nil, grpcErr(answers[0].err)
	}
	host := map[string]string{}
	for _, n := range nodes {
		host[n.GetId()] = n.GetDescription().GetHostname()
	}
	slices.SortFunc(resp.Volumes, func(a, b *objectv1.VolumeInfo) int {
		return cmp.Or(cmp.Compare(host[a.GetNodeId()], host[b.GetNodeId()]), cmp.Compare(a.GetNodeId(), b.GetNodeId()), cmp.Compare(a.GetName(), b.GetName()))
	})
	slices.SortFunc(resp.Errors, func(a, b *controlv1.VolumeNodeError) int {
		return cmp.Or(cmp.Compare(a.GetHostname(), b.GetHostname()), cmp.Compare(a.GetNodeId(), b.GetNodeId()))
	})
	return resp, nil
}

func (s *Server) RemoveVolume(ctx context.Context, req *controlv1.RemoveVolumeRequest) (*controlv1.RemoveVolumeResponse, error) {
	resp := &controlv1.RemoveVolumeResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_RemoveVolume_FullMethodName, req, resp); fwd {
		return resp, err
	}
	var fe sdk.FieldErrors
	switch n := len(req.GetNode()); {
	case n == 0:
		fe.Add("node", "is required: a node's ID, ID prefix or hostname")
	case n > maxRefLen:
		fe.Add("node", "must be at most %d bytes, got %d", maxRefLen, n)
	}
	validVolumeName(&fe, "name", req.GetName())
	if err := fe.Err(); err != nil {
		return nil, grpcErr(err)
	}
	if s.volumes == nil {
		return nil, grpcErr(fmt.Errorf("volumes: not served by this manager: %w", sdk.ErrUnavailable))
	}
	var (
		node *objectv1.Node
		err  error
	)
	if rerr := s.read(ctx, func(tx *state.ReadTx) { node, err = tx.LookupNode(req.GetNode()) }); rerr != nil {
		return nil, grpcErr(rerr)
	}
	if err != nil {
		return nil, grpcErr(err)
	}
	if _, err := s.volumes.VolumeRequest(ctx, node.GetId(), workerv1.VolumeOp_VOLUME_OP_REMOVE, req.GetName()); err != nil {
		return nil, grpcErr(err)
	}
	resp.NodeId, resp.Name = node.GetId(), req.GetName()
	return resp, nil
}
