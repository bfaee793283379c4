package dispatch

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// A task on a network reaches its worker only once the allocator recorded
// its address.
func TestHoldsBackTasksWithoutAddresses(t *testing.T) {
	e := newEnv(t)
	_, p := e.open("n1")
	onNet := task("t1", "n1", objectv1.TaskState_TASK_STATE_ASSIGNED)
	onNet.Spec = &objectv1.TaskSpec{Networks: []*objectv1.NetworkAttachmentConfig{{Target: "net1"}}}
	e.write(func(tx *state.Tx) error {
		return tx.CreateTask(onNet)
	})
	e.write(func(tx *state.Tx) error {
		return tx.CreateTask(task("t2", "n1", objectv1.TaskState_TASK_STATE_ASSIGNED))
	})
	sent := func() map[string]bool {
		out := map[string]bool{}
		complete, incremental := changes(p.messages())
		for _, batch := range append(complete, incremental...) {
			for _, c := range batch {
				out[c.GetTask().GetId()] = true
			}
		}
		return out
	}
	eventually(t, "t2 (no networks) sent", func() bool { return sent()["t2"] })
	if sent()["t1"] {
		t.Fatal("t1 sent before its network address was recorded")
	}
	e.write(func(tx *state.Tx) error {
		next := proto.Clone(tx.Task("t1")).(*objectv1.Task)
		next.Networks = []*objectv1.NetworkAttachment{{NetworkId: "net1", Addr: "10.192.1.2/16"}}
		return tx.UpdateTask(next)
	})
	eventually(t, "t1 sent once its address is recorded", func() bool { return sent()["t1"] })
}
