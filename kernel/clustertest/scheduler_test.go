package clustertest

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoalhq/shoal/internal/ps"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// childPid finds the child process of parent whose command is name (or
// starts with the kernel's 15-byte command name cut from it).
func childPid(parent int, name string) int {
	for _, p := range ps.List() {
		if p.PPID == parent && strings.HasPrefix(name, p.Comm) {
			return p.PID
		}
	}
	return 0
}

// TestSchedulerCrashPlacesEachTaskOnce SIGKILLs the leader's scheduler
// plugin while it places a 5,000-replica service: the plugin is restarted,
// and every task ends placed exactly once. A service whose constraint no
// node meets says why.
func TestSchedulerCrashPlacesEachTaskOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	const replicas = 5000
	c := Start(t, 3, Options{Metrics: true})
	StartWorkers(t, c, 30, WorkerOptions{})
	leader := c.Leader(t, 30*time.Second)
	client := leader.Client(t)
	plugin := childPid(leader.Pid(), "scheduler-spread")
	if plugin == 0 {
		t.Fatalf("no scheduler-spread child of the leader (pid %d)", leader.Pid())
	}

	ctx := context.Background()
	spec := serviceSpec("big")
	spec.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: replicas}}
	svc, err := client.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	id := svc.GetService().GetId()
	// Kill the plugin once placement has begun: the leader's task-state
	// gauges are cheap to poll, so the kill lands between the first
	// batches (placement is too fast to catch by listing tasks).
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		states := metricVec(t, leader, "shoal_state_tasks")
		if states["assigned"]+states["accepted"]+states["preparing"]+states["ready"]+states["starting"]+states["running"] > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := syscall.Kill(plugin, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if resp, err := client.ListTasks(ctx, &controlv1.ListTasksRequest{ServiceIds: []string{id}}); err == nil {
		placed := 0
		for _, tk := range resp.GetTasks() {
			if tk.GetNodeId() != "" {
				placed++
			}
		}
		t.Logf("SIGKILLed the scheduler plugin (pid %d); %d of %d tasks placed just after", plugin, placed, replicas)
	}
	c.eventually(t, 90*time.Second, func(ctx context.Context) error {
		resp, err := client.ListTasks(ctx, &controlv1.ListTasksRequest{ServiceIds: []string{id}})
		if err != nil {
			return err
		}
		running := 0
		for _, tk := range resp.GetTasks() {
			if tk.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_RUNNING {
				running++
			}
		}
		if running != replicas {
			return fmt.Errorf("%d of %d running", running, replicas)
		}
		return nil
	})
	resp, err := client.ListTasks(ctx, &controlv1.ListTasksRequest{ServiceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	// Exactly once: one task per slot, none replaced, each on one node.
	slots := map[uint64]int{}
	for _, tk := range resp.GetTasks() {
		slots[tk.GetSlot()]++
		if tk.GetNodeId() == "" || tk.GetDesiredState() != objectv1.TaskState_TASK_STATE_RUNNING {
			t.Errorf("task %s (slot %d): node %q, desired %v", tk.Id, tk.GetSlot(), tk.GetNodeId(), tk.GetDesiredState())
		}
	}
	if len(resp.GetTasks()) != replicas || len(slots) != replicas {
		t.Errorf("%d tasks over %d slots, want %d and %d", len(resp.GetTasks()), len(slots), replicas, replicas)
	}
	c.eventually(t, 30*time.Second, func(context.Context) error {
		if again := childPid(leader.Pid(), "scheduler-spread"); again == 0 || again == plugin {
			return fmt.Errorf("scheduler plugin not restarted (pid now %d, was %d)", again, plugin)
		}
		return nil
	})

	checkConstraintExplained(ctx, t, c, client)
}

// checkConstraintExplained creates a service whose constraint no node meets
// and checks that its task's status says which constraint it is.
func checkConstraintExplained(ctx context.Context, t *testing.T, c *Cluster, client controlv1.ControlClient) {
	t.Helper()
	// A constraint no node meets is explained.
	spec := serviceSpec("nowhere")
	spec.Task.Placement = &objectv1.Placement{Constraints: []string{"node.labels.zone==nowhere"}}
	spec.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 1}}
	svc, err := client.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	c.eventually(t, 30*time.Second, func(ctx context.Context) error {
		resp, err := client.ListTasks(ctx, &controlv1.ListTasksRequest{ServiceIds: []string{svc.GetService().GetId()}})
		if err != nil || len(resp.GetTasks()) != 1 {
			return fmt.Errorf("tasks: %v %v", resp, err)
		}
		msg := resp.GetTasks()[0].GetStatus().GetMessage()
		if !strings.HasPrefix(msg, "no suitable node: ") || !strings.Contains(msg, "node.labels.zone==nowhere") {
			return fmt.Errorf("message %q does not say which constraint no node meets", msg)
		}
		t.Logf("refusal: %s", msg)
		return nil
	})
}
