package agent_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/shoalhq/shoal/kernel/agent"
	"github.com/shoalhq/shoal/kernel/simexec"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// volumeReply returns the reply to request id the latest session
// received, or nil. m.mu is held.
func (m *fakeManager) volumeReply(id string) *workerv1.VolumeReply {
	s := m.session(len(m.sessions) - 1)
	if s == nil {
		return nil
	}
	for _, msg := range s.received {
		if r := msg.GetVolumeReply(); r != nil && r.GetRequestId() == id {
			return r
		}
	}
	return nil
}

// TestVolumeRequestWithoutVolumes: a node whose executor has no named
// volumes answers a volume request, of the same ID, saying so as a
// FailedPrecondition, instead of leaving the manager waiting.
func TestVolumeRequestWithoutVolumes(t *testing.T) {
	c := newTestCA(t)
	m := newFakeManager(t, c, "manager-1", period)
	startAgent(t, c.identity(t, "node-1", objectv1.NodeRole_NODE_ROLE_WORKER), simexec.New(simexec.Config{}), agent.Config{Managers: []string{m.addr}})
	m.waitFor(t, "a session", func() bool { return m.session(0) != nil })

	m.send(t, &workerv1.ManagerMessage{Msg: &workerv1.ManagerMessage_VolumeRequest{VolumeRequest: &workerv1.VolumeRequest{
		RequestId: "r1", Op: workerv1.VolumeOp_VOLUME_OP_LIST,
	}}})
	var r *workerv1.VolumeReply
	m.waitFor(t, "a volume reply", func() bool {
		r = m.volumeReply("r1")
		return r != nil
	})
	if codes.Code(r.GetCode()) != codes.FailedPrecondition || !strings.Contains(r.GetError(), "has no volumes") || len(r.GetVolumes()) != 0 {
		t.Errorf("reply = %v, want FailedPrecondition: no volumes", r)
	}
}
