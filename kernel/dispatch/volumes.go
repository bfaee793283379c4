package dispatch

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoalhq/shoal/kernel/ids"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// A node's named volumes live in its executor, so listing or removing
// them is a question to the node: the leader sends a VolumeRequest over
// the worker's session (through a follower's relay when that is where the
// worker is connected) and waits for the VolumeReply of the same request
// ID. A reply is small (a list of names), so, unlike logs and execs, it
// travels on the session itself.

const (
	// volumeListTimeout bounds the wait for a node's list: the executor
	// reads a directory and its containers, well under a second; a node
	// silent for longer (an agent too old to know volumes, a wedged one)
	// is named in an error instead of holding up every node's answer.
	volumeListTimeout = 5 * time.Second
	// volumeRemoveTimeout bounds the wait for a removal, which deletes
	// the volume's data: a large volume takes a while.
	volumeRemoveTimeout = 60 * time.Second
	// maxVolumeCalls bounds the volume requests waiting on the leader.
	maxVolumeCalls = 4096
	// maxVolumeErrorText bounds a worker's error text.
	maxVolumeErrorText = 4096
)

// volumeCalls are the dispatcher's volume requests waiting for their
// reply, by request ID.
type volumeCalls struct {
	mu      sync.Mutex
	pending map[string]*volumeCall
	// timeout, when set, replaces both timeouts (tests).
	timeout time.Duration
}

type volumeCall struct {
	nodeID string
	sess   *session
	reply  chan *workerv1.VolumeReply // buffered, gets one reply
}

// VolumeRequest asks nodeID's worker to list (op VOLUME_OP_LIST) or remove
// (VOLUME_OP_REMOVE, name) its executor's named volumes, and returns the
// volumes listed, each with its node ID set. The worker's error comes back
// with its kind (sdk.ErrNotFound, sdk.ErrFailedPrecondition...); a node not
// connected, or silent past the timeout, is sdk.ErrUnavailable. Only the
// leader serves it.
func (s *Service) VolumeRequest(ctx context.Context, nodeID string, op workerv1.VolumeOp, name string) ([]*objectv1.VolumeInfo, error) {
	d := s.dispatcher()
	if d == nil {
		return nil, fmt.Errorf("volumes: not the leader: %w", sdk.ErrUnavailable)
	}
	return d.VolumeRequest(ctx, nodeID, op, name)
}

// VolumeRequest is Service.VolumeRequest on this dispatcher.
func (d *Dispatcher) VolumeRequest(ctx context.Context, nodeID string, op workerv1.VolumeOp, name string) ([]*objectv1.VolumeInfo, error) {
	sess := d.session(nodeID)
	if sess == nil {
		return nil, fmt.Errorf("node %s is not connected (down or reconnecting): %w", nodeID, sdk.ErrUnavailable)
	}
	id := ids.New()
	call := &volumeCall{nodeID: nodeID, sess: sess, reply: make(chan *workerv1.VolumeReply, 1)}
	d.volumes.mu.Lock()
	if d.volumes.pending == nil {
		d.volumes.pending = map[string]*volumeCall{}
	}
	if len(d.volumes.pending) >= maxVolumeCalls {
		d.volumes.mu.Unlock()
		return nil, fmt.Errorf("%d volume requests wait already, the most that may: %w", maxVolumeCalls, sdk.ErrResourceExhausted)
	}
	d.volumes.pending[id] = call
	timeout := volumeListTimeout
	if op == workerv1.VolumeOp_VOLUME_OP_REMOVE {
		timeout = volumeRemoveTimeout
	}
	if d.volumes.timeout > 0 {
		timeout = d.volumes.timeout
	}
	d.volumes.mu.Unlock()
	defer func() {
		d.volumes.mu.Lock()
		delete(d.volumes.pending, id)
		d.volumes.mu.Unlock()
	}()

	if !sess.peer.send(&workerv1.ManagerMessage{Msg: &workerv1.ManagerMessage_VolumeRequest{VolumeRequest: &workerv1.VolumeRequest{
		RequestId: id, Op: op, Name: name,
	}}}) {
		return nil, fmt.Errorf("node %s: its session is closing: %w", nodeID, sdk.ErrUnavailable)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-call.reply:
		if r.GetError() != "" || r.GetCode() != 0 {
			return nil, replyErr(nodeID, r)
		}
		vols := r.GetVolumes()
		for _, v := range vols {
			v.NodeId = nodeID
		}
		return vols, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-d.done:
		return nil, fmt.Errorf("volumes: this manager is no longer the leader: %w", sdk.ErrUnavailable)
	case <-timer.C:
		return nil, fmt.Errorf("node %s did not answer within %s: %w", nodeID, timeout, sdk.ErrUnavailable)
	}
}

// replyErr is a worker's error with its kind.
func replyErr(nodeID string, r *workerv1.VolumeReply) error {
	text := r.GetError()
	if len(text) > maxVolumeErrorText {
		text = text[:maxVolumeErrorText]
	}
	code := codes.Code(r.GetCode())
	if code == codes.OK {
		code = codes.Unknown
	}
	// FromGRPC gives the code's kind (Unknown and codes without one: the
	// error as it is), and keeps the worker's text.
	return fmt.Errorf("node %s: %w", nodeID, sdk.FromGRPC(status.Error(code, text)))
}

// deliverVolumeReply hands a worker's reply to the request waiting for it.
// A reply to a request that is gone (timed out) is dropped; one from
// another node than the request's is a protocol breach, logged.
func (d *Dispatcher) deliverVolumeReply(s *session, r *workerv1.VolumeReply) {
	d.volumes.mu.Lock()
	call := d.volumes.pending[r.GetRequestId()]
	if call != nil && (call.nodeID != s.nodeID || call.sess != s) {
		d.volumes.mu.Unlock()
		d.log.Warn("worker answered a volume request it was not sent", "node_id", s.nodeID, "request_id", r.GetRequestId())
		return
	}
	delete(d.volumes.pending, r.GetRequestId())
	d.volumes.mu.Unlock()
	if call != nil {
		call.reply <- r // buffered, and delivered once: the entry is gone
	}
}
