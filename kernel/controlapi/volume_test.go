package controlapi

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// fakeVolumes answers volume requests from a map of node IDs to their
// volumes; a node in silent blocks until the call's ctx ends or it times
// out, as the dispatcher does.
type fakeVolumes struct {
	mu      sync.Mutex
	vols    map[string][]string
	silent  map[string]bool
	removed []string
}

func (f *fakeVolumes) VolumeRequest(ctx context.Context, nodeID string, op workerv1.VolumeOp, name string) ([]*objectv1.VolumeInfo, error) {
	if f.silent[nodeID] {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
			return nil, fmt.Errorf("node %s did not answer: %w", nodeID, sdk.ErrUnavailable)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch op {
	case workerv1.VolumeOp_VOLUME_OP_LIST:
		var out []*objectv1.VolumeInfo
		for _, v := range f.vols[nodeID] {
			out = append(out, &objectv1.VolumeInfo{Name: v, NodeId: nodeID})
		}
		return out, nil
	default:
		if name == "used" {
			return nil, fmt.Errorf("volume used is in use by task t1: %w", sdk.ErrFailedPrecondition)
		}
		f.removed = append(f.removed, nodeID+"/"+name)
		return nil, nil
	}
}

func newVolumeServer(t *testing.T) (*Server, *fakeVolumes) {
	t.Helper()
	r := &leaderRaft{st: state.New()}
	f := &fakeVolumes{
		vols:   map[string][]string{"n1": {"b", "a"}, "n2": {"c"}, "n4": {"down"}},
		silent: map[string]bool{"n3": true},
	}
	node := func(id, host string, st objectv1.NodeState) *objectv1.Node {
		return &objectv1.Node{Id: id, Spec: &objectv1.NodeSpec{}, Description: &objectv1.NodeDescription{Hostname: host}, Status: &objectv1.NodeStatus{State: st}}
	}
	if err := r.Update(t.Context(), func(tx *state.Tx) error {
		for _, n := range []*objectv1.Node{
			node("n1", "alpha", objectv1.NodeState_NODE_STATE_READY),
			node("n2", "beta", objectv1.NodeState_NODE_STATE_READY),
			node("n3", "gamma", objectv1.NodeState_NODE_STATE_READY),
			node("n4", "delta", objectv1.NodeState_NODE_STATE_DOWN),
		} {
			if err := tx.CreateNode(n); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return NewServer(r, r.st, nil, slog.New(slog.DiscardHandler), WithVolumes(f)), f
}

// TestListVolumesMerges: without a node, every ready node is asked and
// the answers merged, sorted by node and name; a node that does not
// answer is named in errors, not waited for forever; a down node is not
// asked. With a node, only that one (by hostname), and its failure is the
// call's.
func TestListVolumesMerges(t *testing.T) {
	s, _ := newVolumeServer(t)
	ctx := t.Context()
	start := time.Now()
	resp, err := s.ListVolumes(ctx, &controlv1.ListVolumesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("ListVolumes took %s", d)
	}
	var got []string
	for _, v := range resp.GetVolumes() {
		got = append(got, v.GetNodeId()+"/"+v.GetName())
	}
	if want := "n1/a n1/b n2/c"; strings.Join(got, " ") != want {
		t.Errorf("volumes = %v, want %s", got, want)
	}
	if errs := resp.GetErrors(); len(errs) != 1 || errs[0].GetNodeId() != "n3" || errs[0].GetHostname() != "gamma" || !strings.Contains(errs[0].GetError(), "did not answer") {
		t.Errorf("errors = %v, want n3's", errs)
	}

	resp, err = s.ListVolumes(ctx, &controlv1.ListVolumesRequest{Node: "beta"})
	if err != nil || len(resp.GetVolumes()) != 1 || resp.GetVolumes()[0].GetName() != "c" {
		t.Errorf("ListVolumes(beta) = %v, %v; want c", resp, err)
	}
	if _, err := s.ListVolumes(ctx, &controlv1.ListVolumesRequest{Node: "gamma"}); status.Code(err) != codes.Unavailable {
		t.Errorf("ListVolumes(gamma) = %v, want Unavailable", err)
	}
	if _, err := s.ListVolumes(ctx, &controlv1.ListVolumesRequest{Node: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("ListVolumes(nope) = %v, want NotFound", err)
	}
}

// TestRemoveVolume: the node is resolved, the name checked as a volume
// mount's source is, and the node's refusal comes back with its code.
func TestRemoveVolume(t *testing.T) {
	s, f := newVolumeServer(t)
	ctx := t.Context()
	resp, err := s.RemoveVolume(ctx, &controlv1.RemoveVolumeRequest{Node: "alpha", Name: "a"})
	if err != nil || resp.GetNodeId() != "n1" || resp.GetName() != "a" {
		t.Fatalf("RemoveVolume = %v, %v", resp, err)
	}
	if len(f.removed) != 1 || f.removed[0] != "n1/a" {
		t.Errorf("removed = %v", f.removed)
	}
	_, err = s.RemoveVolume(ctx, &controlv1.RemoveVolumeRequest{Node: "n1", Name: "used"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "t1") {
		t.Errorf("remove of a used volume: %v, want FailedPrecondition naming t1", err)
	}
	for _, req := range []*controlv1.RemoveVolumeRequest{
		{Name: "a"},
		{Node: "n1"},
		{Node: "n1", Name: "../etc"},
		{Node: "n1", Name: ".."},
		{Node: "n1", Name: strings.Repeat("v", maxVolumeNameLen+1)},
	} {
		if _, err := s.RemoveVolume(ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("RemoveVolume(%v) = %v, want InvalidArgument", req, err)
		}
	}
	if len(f.removed) != 1 {
		t.Errorf("removed = %v after refused calls", f.removed)
	}
}
