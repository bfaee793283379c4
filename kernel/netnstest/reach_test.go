package netnstest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

const (
	imageName = "docker.io/shoaltest/prog:netns"
	// echoPort is where the echo service's tasks listen.
	echoPort = 8080
	// routeProtocol is the tag of kernel/tasknet's host routes.
	routeProtocol = "115"
)

// TestTasksReachAcrossNodes: one manager and two workers, each a `shoal
// agent` process in its own network namespace, the workers with their own
// containerd. A service with one task per worker on a shared network: each
// worker learns the other's slice through gossip and routes it, and a task
// on each node reaches the task on the other by its IPAM address.
func TestTasksReachAcrossNodes(t *testing.T) {
	c := startCluster(t, 2)
	l, client, workers := c.lab, c.client, c.workers
	ctx := context.Background()
	if _, err := client.CreateNetwork(ctx, &controlv1.CreateNetworkRequest{Spec: &objectv1.NetworkSpec{
		Annotations: &objectv1.Annotations{Name: "front"}, Subnet: "10.251.0.0/16", NodePrefixLen: 24,
	}}); err != nil {
		t.Fatal(err)
	}
	// Watch each worker's routes from now on, for when the route to the
	// other worker appears.
	rt := &routeTimes{seen: map[string]time.Time{}}
	watchCtx, stopWatch := context.WithTimeout(context.Background(), 90*time.Second)
	defer stopWatch()
	for i, w := range workers {
		peer := workers[1-i]
		go func() {
			for watchCtx.Err() == nil {
				out, _ := exec.CommandContext(watchCtx, "ip", "-n", w.ns, "-4", "route", "show", "proto", routeProtocol).Output()
				if strings.Contains(string(out), "via "+peer.addr) {
					rt.mu.Lock()
					rt.seen[w.name] = time.Now()
					rt.mu.Unlock()
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	echo := createService(t, l, client, &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: "echo"},
		Task: &objectv1.TaskSpec{
			Container: &objectv1.ContainerSpec{Image: imageName, Args: []string{fmt.Sprintf("listen:0.0.0.0:%d", echoPort), "sleep:inf"}},
			Placement: &objectv1.Placement{MaxReplicasPerNode: 1},
			Networks:  []*objectv1.NetworkAttachmentConfig{{Target: "front"}},
		},
		Mode: &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 2}},
	})
	echoes, running := waitEchoPerWorker(t, l, client, echo, c.nodeIDs)
	checkPeerRoutes(t, l, workers, echoes, rt, running)
	checkProbesReachPeers(t, l, client, workers, echoes)
}

// routeTimes records when each worker's route to its peer appeared.
type routeTimes struct {
	mu   sync.Mutex
	seen map[string]time.Time // worker: when
}

// waitEchoPerWorker waits until both of echo's tasks run, one per worker,
// with addresses from their node's slice; it returns them by hostname, and
// when the later of the two reported running.
func waitEchoPerWorker(t *testing.T, l *lab, client controlv1.ControlClient, echo string, nodeIDs map[string]string) (echoes map[string]*objectv1.Task, running time.Time) {
	t.Helper()
	echoes = map[string]*objectv1.Task{}
	l.eventually(90*time.Second, "an echo task running on each worker", func(ctx context.Context) error {
		resp, err := client.ListTasks(ctx, &controlv1.ListTasksRequest{ServiceIds: []string{echo}})
		if err != nil {
			return err
		}
		clear(echoes)
		var states []string
		for _, tk := range resp.GetTasks() {
			states = append(states, fmt.Sprintf("%s on %s: %s %s", tk.GetId(), tk.GetNodeId(), tk.GetStatus().GetState(), tk.GetStatus().GetErr()))
			if tk.GetStatus().GetState() != objectv1.TaskState_TASK_STATE_RUNNING {
				continue
			}
			for h, id := range nodeIDs {
				if tk.GetNodeId() == id && len(tk.GetNetworks()) == 1 {
					echoes[h] = tk
				}
			}
		}
		if len(echoes) != 2 {
			return fmt.Errorf("tasks: %v", states)
		}
		return nil
	})
	for _, tk := range echoes {
		if ts := tk.GetStatus().GetTimestamp().AsTime(); ts.After(running) {
			running = ts
		}
	}
	return echoes, running
}

// checkPeerRoutes checks that each worker routes the other's slice to the
// other's LAN address, and logs when the route appeared.
func checkPeerRoutes(t *testing.T, l *lab, workers []*worker, echoes map[string]*objectv1.Task, rt *routeTimes, running time.Time) {
	t.Helper()
	for i, w := range workers {
		peer := workers[1-i]
		slice := echoes[peer.name].GetNetworks()[0].GetNodeSubnet()
		want := fmt.Sprintf("%s via %s", slice, peer.addr)
		l.eventually(30*time.Second, w.name+" routes "+slice+" to "+peer.name, func(ctx context.Context) error {
			out, err := exec.CommandContext(ctx, "ip", "-n", w.ns, "-4", "route", "show", "proto", routeProtocol).CombinedOutput()
			if err != nil {
				return fmt.Errorf("ip route: %v: %s", err, out)
			}
			if !strings.Contains(string(out), want) {
				return fmt.Errorf("routes of %s: %q, want %q", w.name, out, want)
			}
			return nil
		})
		rt.mu.Lock()
		seen := rt.seen[w.name]
		rt.mu.Unlock()
		if !seen.IsZero() {
			// Negative: the route was there before the later task reported
			// running (it follows the task's preparation).
			t.Logf("%s: route to %s's slice %s appeared %s after the later echo task reported running",
				w.name, peer.name, slice, seen.Sub(running).Round(time.Millisecond))
		}
	}
}

// checkProbesReachPeers runs a one-shot task on each worker that connects
// to the echo task of the other, by its address on the network.
func checkProbesReachPeers(t *testing.T, l *lab, client controlv1.ControlClient, workers []*worker, echoes map[string]*objectv1.Task) {
	t.Helper()
	for i, w := range workers {
		peer := workers[1-i]
		addr, err := netip.ParsePrefix(echoes[peer.name].GetNetworks()[0].GetAddr())
		if err != nil {
			t.Fatal(err)
		}
		logs := runOnce(t, l, client, "probe-"+w.name, w.name, "front", fmt.Sprintf("connect:%s:%d", addr.Addr(), echoPort))
		if want := "hello from "; !strings.Contains(logs, want) {
			t.Errorf("the probe on %s, connecting to %s's echo task at %s:%d, printed %q, want %q...", w.name, peer.name, addr.Addr(), echoPort, logs, want)
		} else {
			t.Logf("%s -> %s (%s:%d): %s", w.name, peer.name, addr.Addr(), echoPort, strings.TrimSpace(logs))
		}
	}
}

// createService creates a service and, when the test ends, removes it and
// waits until its tasks are gone from the nodes (containers, their
// namespaces), before the lab is torn down.
func createService(t *testing.T, l *lab, client controlv1.ControlClient, spec *objectv1.ServiceSpec) string {
	t.Helper()
	resp, err := client.CreateService(context.Background(), &controlv1.CreateServiceRequest{Spec: spec})
	if err != nil {
		t.Fatalf("create service %s: %v", spec.GetAnnotations().GetName(), err)
	}
	id := resp.GetService().GetId()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		if _, err := client.RemoveService(ctx, &controlv1.RemoveServiceRequest{Ref: id}); err != nil {
			t.Errorf("remove service %s: %v", spec.GetAnnotations().GetName(), err)
			return
		}
		// Done when every task ended: its process is gone, and its
		// container and namespace go with the lab.
		for ctx.Err() == nil {
			tasks, err := client.ListTasks(ctx, &controlv1.ListTasksRequest{ServiceIds: []string{id}})
			if err == nil && !slices.ContainsFunc(tasks.GetTasks(), func(tk *objectv1.Task) bool {
				return tk.GetStatus().GetState() < objectv1.TaskState_TASK_STATE_COMPLETE && tk.GetStatus().GetState() >= objectv1.TaskState_TASK_STATE_ASSIGNED
			}) {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("the tasks of service %s did not all end within 40s; the lab's cleanup kills what is left", spec.GetAnnotations().GetName())
	})
	return id
}

// taskLogs reads a task's whole log.
func taskLogs(t *testing.T, client controlv1.ControlClient, taskID string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := client.TaskLogs(ctx, &controlv1.TaskLogsRequest{TaskRefs: []string{taskID}})
	if err != nil {
		t.Fatalf("task logs: %v", err)
	}
	var b strings.Builder
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return b.String()
		}
		if err != nil {
			t.Fatalf("task logs: %v", err)
		}
		for _, line := range resp.GetLines() {
			b.Write(line.GetData())
			b.WriteByte('\n')
		}
		for _, e := range resp.GetErrors() {
			t.Logf("task logs: error for %s: %v", e.GetTaskId(), e)
		}
	}
}
