package manager

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoalhq/shoal/kernel/allocator"
	"github.com/shoalhq/shoal/kernel/state"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TestLeaderAllocatesAddresses: the leader runs the IPAM plugin and the
// allocator: a network gets its subnet and a placed task its address.
func TestLeaderAllocatesAddresses(t *testing.T) {
	m := start(t, testConfig(t, filepath.Join(t.TempDir(), "m1")))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	net, err := m.client(t).CreateNetwork(ctx, &controlv1.CreateNetworkRequest{Spec: &objectv1.NetworkSpec{
		Annotations: &objectv1.Annotations{Name: "front"}, Subnet: "10.66.0.0/16",
	}})
	if err != nil {
		t.Fatal(err)
	}
	netID := net.GetNetwork().GetId()
	err = m.m.Raft().Update(ctx, func(tx *state.Tx) error {
		return tx.CreateTask(&objectv1.Task{Id: "t1", ServiceId: "none", NodeId: "some-node",
			Spec:         &objectv1.TaskSpec{Networks: []*objectv1.NetworkAttachmentConfig{{Target: netID}}},
			DesiredState: objectv1.TaskState_TASK_STATE_RUNNING,
			Status:       &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_ASSIGNED}})
	})
	if err != nil {
		t.Fatal(err)
	}
	for {
		var tk *objectv1.Task
		m.m.Store().View(func(tx *state.ReadTx) { tk = tx.Task("t1") })
		if allocator.Allocated(tk) {
			addr := netip.MustParsePrefix(tk.GetNetworks()[0].GetAddr())
			if !netip.MustParsePrefix("10.66.0.0/16").Contains(addr.Addr()) || addr.Bits() != 16 {
				t.Errorf("t1's address = %s, want one of 10.66.0.0/16 with its /16", addr)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatal("t1 got no address")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := m.client(t).RemoveNetwork(ctx, &controlv1.RemoveNetworkRequest{Ref: "front"}); err == nil {
		t.Error("RemoveNetwork(front) while t1 holds an address on it = nil error, want a refusal")
	}
}
