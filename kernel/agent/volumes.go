package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	grpcstatus "google.golang.org/grpc/status"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// Volume requests (shoal volume ls / rm) come as a VolumeRequest over the
// session; the agent asks its executor (when it implements
// executor.Volumes) and answers with a VolumeReply of the same request ID
// on the session. See kernel/dispatch/volumes.go for the manager's side.

// maxVolumeRequests bounds the volume requests the node serves at a time;
// one over it is refused at once.
const maxVolumeRequests = 8

// volumeRunner serves one session's volume requests; they end with it.
type volumeRunner struct {
	ctx  context.Context
	exec executor.Executor
	send func(*workerv1.WorkerMessage) error
	log  *slog.Logger

	mu sync.Mutex
	n  int
	wg sync.WaitGroup
}

func newVolumeRunner(ctx context.Context, x executor.Executor, send func(*workerv1.WorkerMessage) error, log *slog.Logger) *volumeRunner {
	return &volumeRunner{ctx: ctx, exec: x, send: send, log: log}
}

// stop waits for the requests, which end with the session's ctx.
func (r *volumeRunner) stop() { r.wg.Wait() }

// serve answers m, aside.
func (r *volumeRunner) serve(m *workerv1.VolumeRequest) {
	if m.GetRequestId() == "" {
		r.log.Warn("volume request without an id; ignored")
		return
	}
	r.mu.Lock()
	r.n++
	over := r.n > maxVolumeRequests
	r.mu.Unlock()
	r.wg.Go(func() {
		defer func() {
			r.mu.Lock()
			r.n--
			r.mu.Unlock()
		}()
		reply := &workerv1.VolumeReply{RequestId: m.GetRequestId()}
		var err error
		if over {
			err = fmt.Errorf("node serves %d volume requests already, the most it may: %w", maxVolumeRequests, sdk.ErrResourceExhausted)
		} else {
			reply.Volumes, err = volumeOp(r.ctx, r.exec, m)
		}
		if err != nil {
			reply.Volumes = nil
			reply.Error = err.Error()
			reply.Code = uint32(grpcstatus.Code(sdk.ToGRPC(err)))
		}
		if err := r.send(&workerv1.WorkerMessage{Msg: &workerv1.WorkerMessage_VolumeReply{VolumeReply: reply}}); err != nil && r.ctx.Err() == nil {
			r.log.Warn("cannot answer a volume request", "request_id", m.GetRequestId(), "error", err)
		}
	})
}

// volumeOp runs m's operation on x.
func volumeOp(ctx context.Context, x executor.Executor, m *workerv1.VolumeRequest) ([]*objectv1.VolumeInfo, error) {
	vs, ok := x.(executor.Volumes)
	if !ok {
		return nil, executor.NoVolumes()
	}
	switch m.GetOp() {
	case workerv1.VolumeOp_VOLUME_OP_LIST:
		list, err := vs.ListVolumes(ctx)
		if err != nil {
			return nil, err
		}
		if len(list) > executor.MaxVolumes {
			list = list[:executor.MaxVolumes]
		}
		out := make([]*objectv1.VolumeInfo, len(list))
		for i, v := range list {
			out[i] = executor.VolumeToProto(v)
		}
		return out, nil
	case workerv1.VolumeOp_VOLUME_OP_REMOVE:
		if m.GetName() == "" {
			return nil, sdk.FieldErrors{{Field: "name", Message: "is required"}}
		}
		return nil, vs.RemoveVolume(ctx, m.GetName())
	default:
		return nil, fmt.Errorf("unknown volume op %d: %w", m.GetOp(), sdk.ErrInvalidArgument)
	}
}
