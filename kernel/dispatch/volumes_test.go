package dispatch

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// volumeRequests are the VolumeRequests p received.
func volumeRequests(p *fakePeer) []*workerv1.VolumeRequest {
	var out []*workerv1.VolumeRequest
	for _, m := range p.messages() {
		if r := m.GetVolumeRequest(); r != nil {
			out = append(out, r)
		}
	}
	return out
}

// answerVolumes makes the worker of s answer its n-th volume request
// with reply (its request ID filled in), once the request arrived.
func answerVolumes(t *testing.T, s *session, p *fakePeer, n int, reply *workerv1.VolumeReply) *workerv1.VolumeRequest {
	t.Helper()
	var req *workerv1.VolumeRequest
	eventually(t, "a volume request on "+s.nodeID, func() bool {
		if rs := volumeRequests(p); len(rs) >= n {
			req = rs[n-1]
			return true
		}
		return false
	})
	reply.RequestId = req.GetRequestId()
	if err := s.Handle(&workerv1.WorkerMessage{Msg: &workerv1.WorkerMessage_VolumeReply{VolumeReply: reply}}); err != nil {
		t.Fatal(err)
	}
	return req
}

type volumeResult struct {
	vols []*objectv1.VolumeInfo
	err  error
}

func (e *env) volumeRequest(node string, op workerv1.VolumeOp, name string) <-chan volumeResult {
	res := make(chan volumeResult, 1)
	go func() {
		v, err := e.d.VolumeRequest(context.Background(), node, op, name)
		res <- volumeResult{v, err}
	}()
	return res
}

func recvResult(t *testing.T, res <-chan volumeResult) volumeResult {
	t.Helper()
	select {
	case r := <-res:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no answer to the volume request")
		return volumeResult{}
	}
}

// TestVolumeRequestRouting: a request goes to its node's session and
// comes back with the node's reply, its volumes marked with the node; a
// reply from another node is not taken for it; a worker's error keeps its
// kind; a silent node fails the request with Unavailable after the
// timeout, and a node without a session at once.
func TestVolumeRequestRouting(t *testing.T) {
	e := newEnv(t)
	e.d.volumes.timeout = 200 * time.Millisecond
	s1, p1 := e.open("n1")
	s2, p2 := e.open("n2")

	res := e.volumeRequest("n1", workerv1.VolumeOp_VOLUME_OP_LIST, "")
	var req *workerv1.VolumeRequest
	eventually(t, "a volume request on n1", func() bool {
		rs := volumeRequests(p1)
		if len(rs) > 0 {
			req = rs[0]
		}
		return req != nil
	})
	// n2 answers n1's request: ignored, the request still waits for n1.
	if err := s2.Handle(&workerv1.WorkerMessage{Msg: &workerv1.WorkerMessage_VolumeReply{VolumeReply: &workerv1.VolumeReply{
		RequestId: req.GetRequestId(), Volumes: []*objectv1.VolumeInfo{{Name: "forged"}},
	}}}); err != nil {
		t.Fatal(err)
	}
	answerVolumes(t, s1, p1, 1, &workerv1.VolumeReply{Volumes: []*objectv1.VolumeInfo{{Name: "db", InUseBy: []string{"t1"}}, {Name: "cache"}}})
	r := recvResult(t, res)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.vols) != 2 || r.vols[0].GetName() != "db" || r.vols[0].GetNodeId() != "n1" || r.vols[1].GetNodeId() != "n1" {
		t.Errorf("volumes = %v, want db and cache of n1", r.vols)
	}
	if len(volumeRequests(p2)) != 0 {
		t.Errorf("n2 got a request meant for n1")
	}

	res = e.volumeRequest("n1", workerv1.VolumeOp_VOLUME_OP_REMOVE, "db")
	got := answerVolumes(t, s1, p1, 2, &workerv1.VolumeReply{Error: "volume db is in use by task t1", Code: uint32(codes.FailedPrecondition)})
	if got.GetOp() != workerv1.VolumeOp_VOLUME_OP_REMOVE || got.GetName() != "db" {
		t.Errorf("request = %v, want remove db", got)
	}
	if r := recvResult(t, res); !errors.Is(r.err, sdk.ErrFailedPrecondition) || !strings.Contains(r.err.Error(), "t1") {
		t.Errorf("remove of a used volume: %v, want FailedPrecondition naming t1", r.err)
	}

	// n2 never answers.
	start := time.Now()
	r = recvResult(t, e.volumeRequest("n2", workerv1.VolumeOp_VOLUME_OP_LIST, ""))
	if !errors.Is(r.err, sdk.ErrUnavailable) || !strings.Contains(r.err.Error(), "did not answer") {
		t.Errorf("silent node: %v, want Unavailable", r.err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("silent node took %s to fail", d)
	}
	e.d.volumes.mu.Lock()
	pending := len(e.d.volumes.pending)
	e.d.volumes.mu.Unlock()
	if pending != 0 {
		t.Errorf("%d requests still pending", pending)
	}
	// Its late reply is dropped.
	answerVolumes(t, s2, p2, 1, &workerv1.VolumeReply{})

	r = recvResult(t, e.volumeRequest("n9", workerv1.VolumeOp_VOLUME_OP_LIST, ""))
	if !errors.Is(r.err, sdk.ErrUnavailable) {
		t.Errorf("node without a session: %v, want Unavailable", r.err)
	}
}
