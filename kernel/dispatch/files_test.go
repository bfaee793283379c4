package dispatch

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/secrets"
	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

func sealedSecret(t *testing.T, k *secrets.Keyring, id, name, data string) *objectv1.Secret {
	t.Helper()
	s, err := k.Seal(id, []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	return &objectv1.Secret{Id: id, Spec: &objectv1.SecretSpec{Annotations: &objectv1.Annotations{Name: name}}, Sealed: s}
}

func withFiles(tk *objectv1.Task, secretIDs ...string) *objectv1.Task {
	c := &objectv1.ContainerSpec{Image: "sim"}
	for _, id := range secretIDs {
		c.Secrets = append(c.Secrets, &objectv1.FileReference{Id: id, Name: id})
	}
	c.Configs = []*objectv1.FileReference{{Id: "cfg", Name: "app.conf", Target: "/etc/app.conf"}}
	tk.Spec = &objectv1.TaskSpec{Container: c}
	return tk
}

// TestSecretsOnlyToTheirTasksNode: a worker receives a secret's data only
// in the assignment of a task of its own that uses it; another worker's
// secret never reaches it, in the complete set or in later changes.
func TestSecretsOnlyToTheirTasksNode(t *testing.T) {
	key, _ := secrets.Generate()
	k, err := secrets.New(key)
	if err != nil {
		t.Fatal(err)
	}
	h := &secrets.Holder{}
	h.Set(k)
	e := newEnvConfig(t, Config{Grace: time.Minute, Secrets: h})
	const dataA, dataB = "secret-of-node-one", "secret-of-node-two"
	e.write(func(tx *state.Tx) error {
		for _, s := range []*objectv1.Secret{sealedSecret(t, k, "sa", "a", dataA), sealedSecret(t, k, "sb", "b", dataB)} {
			if err := tx.CreateSecret(s); err != nil {
				return err
			}
		}
		if err := tx.CreateConfig(&objectv1.Config{Id: "cfg", Spec: &objectv1.ConfigSpec{Annotations: &objectv1.Annotations{Name: "app.conf"}, Data: []byte("x=1")}}); err != nil {
			return err
		}
		if err := tx.CreateTask(withFiles(task("t1", "n1", objectv1.TaskState_TASK_STATE_ASSIGNED), "sa")); err != nil {
			return err
		}
		return tx.CreateTask(withFiles(task("t2", "n2", objectv1.TaskState_TASK_STATE_ASSIGNED), "sb"))
	})
	_, p1 := e.open("n1")
	_, p2 := e.open("n2")

	files := func(msgs []*workerv1.ManagerMessage, taskID string) map[string]string {
		out := map[string]string{}
		for _, m := range msgs {
			for _, c := range m.GetAssignments().GetChanges() {
				if c.GetTask().GetId() == taskID {
					for _, f := range c.GetFiles() {
						out[f.GetRef().GetName()] = string(f.GetData())
					}
				}
			}
		}
		return out
	}
	if got := files(p1.messages(), "t1"); got["sa"] != dataA || got["app.conf"] != "x=1" {
		t.Errorf("n1's t1 files = %v, want secret a and the config", got)
	}
	if got := files(p2.messages(), "t2"); got["sb"] != dataB {
		t.Errorf("n2's t2 files = %v, want secret b", got)
	}

	// A later task on n1 that uses a: sent with it, in an incremental batch.
	e.write(func(tx *state.Tx) error {
		return tx.CreateTask(withFiles(task("t3", "n1", objectv1.TaskState_TASK_STATE_ASSIGNED), "sa"))
	})
	eventually(t, "t3 sent to n1", func() bool { return files(p1.messages(), "t3")["sa"] == dataA })

	// Stopping t1: its change carries no file.
	e.write(func(tx *state.Tx) error {
		t1 := proto.Clone(tx.Task("t1")).(*objectv1.Task)
		t1.DesiredState = objectv1.TaskState_TASK_STATE_SHUTDOWN
		return tx.UpdateTask(t1)
	})
	eventually(t, "t1's shutdown sent", func() bool {
		_, inc := changes(p1.messages())
		for _, b := range inc {
			for _, c := range b {
				if c.GetTask().GetId() == "t1" && c.GetTask().GetDesiredState() == objectv1.TaskState_TASK_STATE_SHUTDOWN {
					if len(c.GetFiles()) != 0 {
						t.Errorf("t1's shutdown carries %d files", len(c.GetFiles()))
					}
					return true
				}
			}
		}
		return false
	})

	for node, c := range map[string]struct {
		p     *fakePeer
		other string
	}{"n1": {p1, dataB}, "n2": {p2, dataA}} {
		for _, m := range c.p.messages() {
			b, _ := proto.Marshal(m)
			if bytes.Contains(b, []byte(c.other)) {
				t.Errorf("%s received another node's secret in %v", node, m)
			}
		}
	}
}
