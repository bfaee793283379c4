package clustertest

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoalhq/shoal/sdk/plugintest"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TestOutOfProcessSchedulers places a service with the example scheduler
// plugins, each named in the managers' [plugins.scheduler] path and run by
// the leader as its child process: the Go first-fit plugin, built, and the
// Python one. Every task is placed, on a node its constraint allows, and
// runs.
func TestOutOfProcessSchedulers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		path func(t *testing.T) string
		comm string // the plugin process's name, as /proc shows it
	}{
		{"Go", func(t *testing.T) string {
			return plugintest.Build(t, "github.com/shoalhq/shoal/examples/scheduler-firstfit")
		}, "plugin"},
		{"Python", func(t *testing.T) string {
			const python = "/usr/bin/python3"
			if out, err := exec.Command(python, "-c", "import grpc, google.protobuf, cryptography").CombinedOutput(); err != nil {
				t.Skipf("%s cannot run the Python plugin (%v: %s): run scripts/deps.sh", python, err, out)
			}
			return filepath.Join(root, "examples/scheduler-python/plugin.py")
		}, "plugin.py"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path(t)
			c := Start(t, 1, Options{Config: fmt.Sprintf("[plugins.scheduler]\npath = %q\n", path)})
			workers := StartWorkers(t, c, 3, WorkerOptions{})
			leader := c.Leader(t, 30*time.Second)
			if childPid(leader.Pid(), tc.comm) == 0 {
				t.Fatalf("no %s child of the leader (pid %d): the scheduler plugin %s is not running\n%s", tc.comm, leader.Pid(), path, tail(leader.Log(), 40))
			}
			placeAndRun(t, leader.Client(t), workers[0].NodeID)
		})
	}
}

// placeAndRun creates a service of 8 replicas that must avoid the node
// avoid, and waits until every task runs, none on avoid.
func placeAndRun(t *testing.T, client controlv1.ControlClient, avoid string) {
	t.Helper()
	const replicas = 8
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	spec := &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: "placed"},
		Task: &objectv1.TaskSpec{
			Container: &objectv1.ContainerSpec{Image: "example.local/app:1"},
			Placement: &objectv1.Placement{Constraints: []string{"node.id!=" + avoid}},
		},
		Mode: &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: replicas}},
	}
	svc, err := client.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	id := svc.GetService().GetId()
	var last string
	for ctx.Err() == nil {
		resp, err := client.ListTasks(ctx, &controlv1.ListTasksRequest{ServiceIds: []string{id}})
		if err != nil {
			last = err.Error()
			time.Sleep(200 * time.Millisecond)
			continue
		}
		running := 0
		last = ""
		for _, tk := range resp.GetTasks() {
			if tk.GetDesiredState() != objectv1.TaskState_TASK_STATE_RUNNING {
				continue
			}
			switch {
			case tk.GetNodeId() == avoid:
				t.Fatalf("task %s placed on %s, which its constraint node.id!=%s excludes", tk.GetId(), avoid, avoid)
			case tk.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_RUNNING:
				running++
			default:
				last = fmt.Sprintf("task %s is %s (%s)", tk.GetId(), tk.GetStatus().GetState(), tk.GetStatus().GetMessage())
			}
		}
		if running == replicas {
			return
		}
		last = fmt.Sprintf("%d of %d tasks running; %s", running, replicas, last)
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("service not running within 60s: %s", last)
}
