package state

import (
	"testing"

	"google.golang.org/protobuf/proto"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// FuzzApply applies arbitrary commands to the seeded store and checks that
// Apply never panics, is deterministic, undoes failed transactions entirely
// and keeps its indexes exact.
func FuzzApply(f *testing.F) {
	seeds := []*raftv1.Command{
		command(creates(testTask("t9", "s1", "n1", running, pending), testNode("n3", worker, drain))),
		command(
			txn(act(opUpdate, withVersion(testTask("t1", "s1", "n2", stopped, failed), 1))),
			txn(act(opDelete, &objectv1.Task{Id: "t2"}), act(opDelete, &objectv1.Task{Id: "t404"})),
		),
		command(txn(
			act(opUpdate, withVersion(testService("s1", "db"), 1)),
			act(opUpdate, withVersion(testService("s2", "web"), 1)),
		)),
		command(
			creates(testService("s3", "web")),
			txn(act(opDelete, &objectv1.Node{Id: "n1"}), act(opCreate, testNode("n1", manager, drain))),
			txn(act(opUpdate, withVersion(testCluster("c1"), 1)), act(opCreate, testCluster("c2"))),
		),
		command(txn(act(opDelete, withVersion(&objectv1.Task{Id: "t3"}, 1)), act(raftv1.ActionKind(7), testNode("n9", worker, active)))),
		command(
			creates(testSecret("sec1", "db-password"), testConfig("cfg1", "nginx.conf")),
			creates(testSecret("sec2", "db-password")),
			txn(act(opCreate, clearSecret("sec3", "api-key"))),
			txn(act(opUpdate, withVersion(testConfig("cfg1", "app.conf"), 2)), act(opDelete, &objectv1.Config{Id: "cfg1"})),
		),
	}
	for _, c := range seeds {
		data, err := proto.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		decode := func() *raftv1.Command {
			c := &raftv1.Command{}
			if err := proto.Unmarshal(data, c); err != nil {
				return nil
			}
			return c
		}
		if decode() == nil {
			return
		}
		a, b := seeded(t), seeded(t)
		for index := uint64(2); index <= 3; index++ {
			// Each store gets its own copy: Apply takes ownership.
			errsA := a.Apply(index, decode())
			errsB := b.Apply(index, decode())
			if len(errsA) != len(errsB) {
				t.Fatalf("Apply gave %d and %d results", len(errsA), len(errsB))
			}
			for i := range errsA {
				if (errsA[i] == nil) != (errsB[i] == nil) || (errsA[i] != nil && errsA[i].Error() != errsB[i].Error()) {
					t.Fatalf("Apply result %d = %v and %v on two stores", i, errsA[i], errsB[i])
				}
			}
			snapA, snapB := a.Snapshot(), b.Snapshot()
			if !proto.Equal(snapA, snapB) {
				t.Fatalf("two stores applying the same command differ:\n%v\n%v", snapA, snapB)
			}
			checkIndexes(t, a)
			for _, tk := range snapA.Tasks {
				if v := tk.GetMeta().GetVersion(); v > index {
					t.Fatalf("task %s at version %d after index %d", tk.GetId(), v, index)
				}
			}

			// Failed transactions changed nothing: applying only the
			// successful ones to b's previous state gives the same state.
			if index == 2 {
				c := seeded(t)
				only := &raftv1.Command{}
				for i, txn := range decode().GetTransactions() {
					if errsA[i] == nil {
						only.Transactions = append(only.Transactions, txn)
					}
				}
				for i, err := range c.Apply(index, only) {
					if err != nil {
						t.Fatalf("successful transaction %d alone = %v, want nil", i, err)
					}
				}
				if snapC := c.Snapshot(); !proto.Equal(snapA, snapC) {
					t.Fatalf("state with failed transactions differs from state without them:\n%v\n%v", snapA, snapC)
				}
			}
		}
	})
}
