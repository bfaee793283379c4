package node

import (
	"context"

	"github.com/shoalhq/shoal/sdk/executor"
)

// The node's executor wrappers pass executor.Volumes through when what they
// wrap has it: the agent finds the capability with a type assertion on the
// outermost one, so each layer must offer it.

var (
	_ executor.Volumes = hosted{}
	_ executor.Volumes = (*nodeExecutor)(nil)
	_ executor.Volumes = (*netExecutor)(nil)
)

func volumesOf(x executor.Executor) (executor.Volumes, error) {
	if v, ok := x.(executor.Volumes); ok {
		return v, nil
	}
	return nil, executor.NoVolumes()
}

func (x hosted) ListVolumes(ctx context.Context) ([]executor.VolumeInfo, error) {
	c, err := x.h.Get(ctx)
	if err != nil {
		return nil, err
	}
	v, err := volumesOf(c)
	if err != nil {
		return nil, err
	}
	return v.ListVolumes(ctx)
}

func (x hosted) RemoveVolume(ctx context.Context, name string) error {
	c, err := x.h.Get(ctx)
	if err != nil {
		return err
	}
	v, err := volumesOf(c)
	if err != nil {
		return err
	}
	return v.RemoveVolume(ctx, name)
}

func (x *nodeExecutor) ListVolumes(ctx context.Context) ([]executor.VolumeInfo, error) {
	v, err := volumesOf(x.Executor)
	if err != nil {
		return nil, err
	}
	return v.ListVolumes(ctx)
}

func (x *nodeExecutor) RemoveVolume(ctx context.Context, name string) error {
	v, err := volumesOf(x.Executor)
	if err != nil {
		return err
	}
	return v.RemoveVolume(ctx, name)
}

func (x *netExecutor) ListVolumes(ctx context.Context) ([]executor.VolumeInfo, error) {
	v, err := volumesOf(x.Executor)
	if err != nil {
		return nil, err
	}
	return v.ListVolumes(ctx)
}

func (x *netExecutor) RemoveVolume(ctx context.Context, name string) error {
	v, err := volumesOf(x.Executor)
	if err != nil {
		return err
	}
	return v.RemoveVolume(ctx, name)
}
