package dispatch

import (
	"fmt"

	"github.com/shoalhq/shoal/kernel/secrets"
	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// Secrets and configs reach a worker only inside the assignment of a task
// that uses them, and only while the task is wanted running: the leader
// opens a secret for exactly the session of the node its task is assigned
// to. A worker has no call that asks for a secret; what it holds is what
// its own tasks use.

// needsFiles reports whether t's assignment must carry file data.
func needsFiles(t *objectv1.Task) bool {
	c := t.GetSpec().GetContainer()
	return (len(c.GetSecrets()) > 0 || len(c.GetConfigs()) > 0) &&
		t.GetDesiredState() <= objectv1.TaskState_TASK_STATE_RUNNING
}

// taskFiles returns the data of t's secrets and configs, read from tx and
// opened with k. A missing object or a secret k cannot open is an error;
// the task is then sent without files and its Prepare fails, naming it.
func taskFiles(tx *state.ReadTx, k *secrets.Keyring, t *objectv1.Task) ([]*objectv1.TaskFile, error) {
	c := t.GetSpec().GetContainer()
	out := make([]*objectv1.TaskFile, 0, len(c.GetSecrets())+len(c.GetConfigs()))
	for _, ref := range c.GetSecrets() {
		sec := tx.Secret(ref.GetId())
		if sec == nil {
			return nil, fmt.Errorf("secret %s (%s) no longer exists", ref.GetName(), ref.GetId())
		}
		if k == nil {
			return nil, secrets.ErrNoKey
		}
		data, err := k.Open(sec.GetId(), sec.GetSealed())
		if err != nil {
			return nil, err
		}
		out = append(out, &objectv1.TaskFile{Ref: ref, Secret: true, Data: data})
	}
	for _, ref := range c.GetConfigs() {
		cfg := tx.Config(ref.GetId())
		if cfg == nil {
			return nil, fmt.Errorf("config %s (%s) no longer exists", ref.GetName(), ref.GetId())
		}
		out = append(out, &objectv1.TaskFile{Ref: ref, Data: cfg.GetSpec().GetData()})
	}
	return out, nil
}

// attachFiles fills the file data of the UPDATE changes that need it.
func (d *Dispatcher) attachFiles(changes []*workerv1.AssignmentChange) {
	var need []*workerv1.AssignmentChange
	for _, c := range changes {
		if c.GetAction() == workerv1.AssignmentChangeAction_ASSIGNMENT_CHANGE_ACTION_UPDATE && needsFiles(c.GetTask()) {
			need = append(need, c)
		}
	}
	if len(need) == 0 {
		return
	}
	var k *secrets.Keyring
	if d.secrets != nil {
		k = d.secrets.Get()
	}
	d.st.View(func(tx *state.ReadTx) {
		for _, c := range need {
			files, err := taskFiles(tx, k, c.GetTask())
			if err != nil {
				d.log.Error("a task's secrets or configs cannot be sent; its node will fail it", "task_id", c.GetTask().GetId(), "error", err)
				continue
			}
			c.Files = files
		}
	})
}

// changeBytes is what a change's files weigh in its message.
func changeBytes(c *workerv1.AssignmentChange) int {
	n := 0
	for _, f := range c.GetFiles() {
		n += len(f.GetData())
	}
	return n
}

// maxBatchFileBytes bounds the file data in one assignments message, well
// below the 64 MiB message limit: a batch of tasks with large secrets goes
// in several messages.
const maxBatchFileBytes = 16 << 20
