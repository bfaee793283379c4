package clustertest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TestSecretsAcrossFailover: every manager holds the cluster's secrets key
// (the first made it, the others got it when they joined), so a new leader
// opens the secrets the old one sealed: after the leader is SIGKILLed, a
// scaled-up service's new tasks get their secret (the simulated executor
// refuses a task whose secret did not come with it) and run.
func TestSecretsAcrossFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := Start(t, 3, Options{})
	ws := StartWorkers(t, c, 4, WorkerOptions{})
	c.WaitReady(t, ws, 60*time.Second)
	leader := c.Leader(t, 30*time.Second)
	client := leader.Client(t)
	ctx := context.Background()

	var keys [][]byte
	c.eventually(t, 30*time.Second, func(context.Context) error {
		keys = keys[:0]
		for _, m := range c.Managers {
			k, err := os.ReadFile(filepath.Join(m.Dir, "data", "secrets.key"))
			if err != nil {
				return err
			}
			keys = append(keys, k)
		}
		return nil
	})
	for i, k := range keys {
		if len(k) != 32 || !bytes.Equal(k, keys[0]) {
			t.Fatalf("manager %d holds a %d-byte key, not the first manager's", i, len(k))
		}
	}

	if _, err := client.CreateSecret(ctx, &controlv1.CreateSecretRequest{Spec: &objectv1.SecretSpec{
		Annotations: &objectv1.Annotations{Name: "pw"}, Data: []byte("s3cret"),
	}}); err != nil {
		t.Fatal(err)
	}
	spec := serviceSpec("web")
	spec.Task.Container.Secrets = []*objectv1.FileReference{{Name: "pw"}}
	spec.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 4}}
	svc, err := client.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	id := svc.GetService().GetId()
	running := func(client controlv1.ControlClient, want int) func(context.Context) error {
		return func(ctx context.Context) error {
			resp, err := client.ListTasks(ctx, &controlv1.ListTasksRequest{ServiceIds: []string{id}})
			if err != nil {
				return err
			}
			n := 0
			for _, tk := range resp.GetTasks() {
				switch tk.GetStatus().GetState() {
				case objectv1.TaskState_TASK_STATE_RUNNING:
					n++
				case objectv1.TaskState_TASK_STATE_REJECTED, objectv1.TaskState_TASK_STATE_FAILED:
					return fmt.Errorf("task %s %s: %s", tk.Id, tk.GetStatus().GetState(), tk.GetStatus().GetErr())
				}
			}
			if n != want {
				return fmt.Errorf("%d of %d running", n, want)
			}
			return nil
		}
	}
	c.eventually(t, 60*time.Second, running(client, 4))

	t.Logf("SIGKILL leader %s", leader.Name)
	leader.Kill()
	leader = c.Leader(t, 30*time.Second)
	client = leader.Client(t)
	c.eventually(t, 30*time.Second, func(ctx context.Context) error {
		got, err := client.GetService(ctx, &controlv1.GetServiceRequest{Ref: id})
		if err != nil {
			return err
		}
		spec := got.GetService().GetSpec()
		spec.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 8}}
		_, err = client.UpdateService(ctx, &controlv1.UpdateServiceRequest{Ref: id, Version: got.GetService().GetMeta().GetVersion(), Spec: spec})
		return err
	})
	c.eventually(t, 60*time.Second, running(client, 8))
}
