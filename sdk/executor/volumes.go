package executor

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/sdk"
	executorv1 "github.com/shoalhq/shoal/sdk/proto/shoal/executor/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// Volumes is implemented by executors that keep named volumes (mounts of
// type volume): made on a task's first use, kept across tasks until
// removed. It is optional: the kernel asks an Executor for it with a type
// assertion, and reports a node whose executor lacks it as having no
// volumes. Both calls may overlap anything, Prepare included.
type Volumes interface {
	// ListVolumes returns every named volume the executor holds, each
	// with the tasks whose containers (running or not) mount it.
	ListVolumes(ctx context.Context) ([]VolumeInfo, error)

	// RemoveVolume deletes the volume and its data. A volume the
	// executor does not hold is sdk.ErrNotFound; one that a task's
	// container mounts is sdk.ErrFailedPrecondition, naming the tasks (a
	// Prepare of a task that mounts it must not create it again halfway
	// through: the executor serializes the two). A name that is not a
	// volume's name is sdk.ErrInvalidArgument.
	RemoveVolume(ctx context.Context, name string) error
}

// VolumeInfo is a named volume as the executor holds it.
type VolumeInfo struct {
	Name string
	// InUseBy are the IDs of the tasks whose containers mount it.
	InUseBy []string
	// CreatedAt is when it was made; zero when unknown.
	CreatedAt time.Time
}

// MaxVolumes bounds the volumes a ListVolumes reply may hold.
const MaxVolumes = 10000

// NoVolumes is the error of a node whose executor has no named volumes
// (it does not implement Volumes, or its plugin answers Unimplemented).
func NoVolumes() error {
	return fmt.Errorf("this node's executor has no volumes: %w", sdk.ErrFailedPrecondition)
}

var _ Volumes = (*Client)(nil)

// ListVolumes calls the plugin's ListVolumes. A plugin that has none
// (Unimplemented) is NoVolumes; a reply with a volume without a name, or
// one named twice, is refused whole.
func (c *Client) ListVolumes(ctx context.Context) ([]VolumeInfo, error) {
	resp, err := c.rpc.ListVolumes(ctx, &executorv1.ListVolumesRequest{})
	if err != nil {
		return nil, volumesErr(err)
	}
	var fe sdk.FieldErrors
	if n := len(resp.GetVolumes()); n > MaxVolumes {
		fe.Add("volumes", "must hold at most %d volumes, got %d", MaxVolumes, n)
		return nil, badReply("list volumes", fe)
	}
	seen := map[string]int{}
	out := make([]VolumeInfo, len(resp.GetVolumes()))
	for i, v := range resp.GetVolumes() {
		if v.GetName() == "" {
			fe.Add(fmt.Sprintf("volumes[%d].name", i), "is required")
		} else if j, dup := seen[v.GetName()]; dup {
			fe.Add(fmt.Sprintf("volumes[%d].name", i), "%q is also volumes[%d]", v.GetName(), j)
		}
		seen[v.GetName()] = i
		out[i] = VolumeInfo{Name: v.GetName(), InUseBy: v.GetInUseBy()}
		if v.GetCreatedAt() != nil {
			out[i].CreatedAt = v.GetCreatedAt().AsTime()
		}
	}
	if err := fe.Err(); err != nil {
		return nil, badReply("list volumes", fe)
	}
	return out, nil
}

// RemoveVolume calls the plugin's RemoveVolume.
func (c *Client) RemoveVolume(ctx context.Context, name string) error {
	_, err := c.rpc.RemoveVolume(ctx, &executorv1.RemoveVolumeRequest{Name: name})
	return volumesErr(err)
}

func volumesErr(err error) error {
	if status.Code(err) == codes.Unimplemented {
		return NoVolumes()
	}
	return sdk.FromGRPC(err)
}

// VolumeToProto is v on the wire.
func VolumeToProto(v VolumeInfo) *objectv1.VolumeInfo {
	p := &objectv1.VolumeInfo{Name: v.Name, InUseBy: slices.Sorted(slices.Values(v.InUseBy))}
	if !v.CreatedAt.IsZero() {
		p.CreatedAt = timestamppb.New(v.CreatedAt)
	}
	return p
}

func (s *server) ListVolumes(ctx context.Context, _ *executorv1.ListVolumesRequest) (*executorv1.ListVolumesResponse, error) {
	vs, ok := s.impl.(Volumes)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this executor has no volumes")
	}
	list, err := vs.ListVolumes(ctx)
	if err != nil {
		return nil, sdk.ToGRPC(err)
	}
	resp := &executorv1.ListVolumesResponse{Volumes: make([]*objectv1.VolumeInfo, len(list))}
	for i, v := range list {
		resp.Volumes[i] = VolumeToProto(v)
	}
	return resp, nil
}

func (s *server) RemoveVolume(ctx context.Context, req *executorv1.RemoveVolumeRequest) (*executorv1.RemoveVolumeResponse, error) {
	vs, ok := s.impl.(Volumes)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this executor has no volumes")
	}
	if req.GetName() == "" {
		return nil, sdk.ToGRPC(sdk.FieldErrors{{Field: "name", Message: "is required"}})
	}
	if err := vs.RemoveVolume(ctx, req.GetName()); err != nil {
		return nil, sdk.ToGRPC(err)
	}
	return &executorv1.RemoveVolumeResponse{}, nil
}
