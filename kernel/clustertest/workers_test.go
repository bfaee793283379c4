package clustertest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// setHeartbeat sets the cluster's heartbeat period.
func setHeartbeat(t *testing.T, client controlv1.ControlClient, period time.Duration) {
	t.Helper()
	ctx := context.Background()
	cl, err := client.GetCluster(ctx, &controlv1.GetClusterRequest{})
	if err != nil {
		t.Fatal(err)
	}
	spec := proto.Clone(cl.GetCluster().GetSpec()).(*objectv1.ClusterSpec)
	spec.Dispatcher = &objectv1.DispatcherConfig{HeartbeatPeriod: durationpb.New(period)}
	if _, err := client.UpdateCluster(ctx, &controlv1.UpdateClusterRequest{Version: cl.GetCluster().GetMeta().GetVersion(), Spec: spec}); err != nil {
		t.Fatal(err)
	}
}

// runningByNode counts a service's tasks observed running, per node, and
// the tasks desired running.
func runningByNode(t *testing.T, client controlv1.ControlClient, serviceID string) (map[string]int, int, int) {
	t.Helper()
	resp, err := client.ListTasks(context.Background(), &controlv1.ListTasksRequest{ServiceIds: []string{serviceID}})
	if err != nil {
		return nil, 0, 0
	}
	by := map[string]int{}
	running, desired := 0, 0
	for _, tk := range resp.GetTasks() {
		if tk.GetDesiredState() != objectv1.TaskState_TASK_STATE_RUNNING {
			continue
		}
		desired++
		if tk.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_RUNNING {
			by[tk.GetNodeId()]++
			running++
		}
	}
	return by, running, desired
}

func nodeStates(t *testing.T, client controlv1.ControlClient) map[string]objectv1.NodeState {
	t.Helper()
	resp, err := client.ListNodes(context.Background(), &controlv1.ListNodesRequest{})
	if err != nil {
		return nil
	}
	out := map[string]objectv1.NodeState{}
	for _, n := range resp.GetNodes() {
		out[n.Id] = n.GetStatus().GetState()
	}
	return out
}

// TestWorkersThroughFailures: 3 managers and 200 simulated workers spread
// over them (so two thirds reach the leader through a follower's relay).
// A 2,000-replica service converges; 10 workers that die are committed Down
// within 3 heartbeat periods + 1 s and their tasks run elsewhere; the leader
// SIGKILLed, workers carry on without a task restarting and without a node
// marked Down.
func TestWorkersThroughFailures(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	const (
		workers  = 200
		replicas = 2000
		dead     = 10
		period   = time.Second
	)
	c := Start(t, 3, Options{})
	client := c.Managers[0].Client(t)
	setHeartbeat(t, client, period)
	ws := StartWorkers(t, c, workers, WorkerOptions{})

	ctx := context.Background()
	spec := serviceSpec("web")
	spec.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: replicas}}
	start := time.Now()
	svc, err := client.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	id := svc.GetService().GetId()
	c.eventually(t, 90*time.Second, func(context.Context) error {
		_, running, desired := runningByNode(t, client, id)
		if running != replicas || desired != replicas {
			return fmt.Errorf("%d of %d tasks running (%d desired)", running, replicas, desired)
		}
		return nil
	})
	t.Logf("%d replicas running on %d workers after %s", replicas, workers, time.Since(start).Round(time.Millisecond))

	// Kill 10 workers.
	deadIDs := map[string]bool{}
	killed := time.Now()
	for _, w := range ws[:dead] {
		w.Stop()
		deadIDs[w.NodeID] = true
	}
	bound := 3*period + time.Second
	c.eventually(t, 30*time.Second, func(context.Context) error {
		states := nodeStates(t, client)
		for id := range deadIDs {
			if states[id] != objectv1.NodeState_NODE_STATE_DOWN {
				return fmt.Errorf("node %s is %v", id, states[id])
			}
		}
		return nil
	})
	if took := time.Since(killed); took > bound+500*time.Millisecond { // polling slack
		t.Errorf("dead workers committed Down after %s, want within %s", took.Round(time.Millisecond), bound)
	} else {
		t.Logf("dead workers committed Down after %s (bound %s)", took.Round(time.Millisecond), bound)
	}
	c.eventually(t, 60*time.Second, func(context.Context) error {
		by, running, _ := runningByNode(t, client, id)
		if running != replicas {
			return fmt.Errorf("%d of %d running", running, replicas)
		}
		for n := range deadIDs {
			if by[n] > 0 {
				return fmt.Errorf("%d tasks still counted running on dead node %s", by[n], n)
			}
		}
		return nil
	})

	checkLeaderKillRestartsNothing(t, c, ws[dead:], deadIDs, id, replicas, period)
}

// checkLeaderKillRestartsNothing SIGKILLs the leader and checks that no
// live worker restarts a task and no node but the dead ones is marked Down
// through the failover; id is the service of the replicas tasks.
func checkLeaderKillRestartsNothing(t *testing.T, c *Cluster, live []*Worker, deadIDs map[string]bool, id string, replicas int, period time.Duration) {
	t.Helper()
	// SIGKILL the leader: nothing restarts, nobody is marked Down.
	starts := map[string]int{}
	for _, w := range live {
		starts[w.Name] = w.Starts()
	}
	leader := c.Leader(t, 30*time.Second)
	t.Logf("SIGKILL leader %s", leader.Name)
	leader.Kill()
	// Watch for longer than a node's deadline through the election and the
	// reconnections.
	watchUntil := time.Now().Add(5 * period)
	for time.Now().Before(watchUntil) {
		for _, m := range c.Running() {
			states := nodeStates(t, m.Client(t))
			for id, st := range states {
				if st == objectv1.NodeState_NODE_STATE_DOWN && !deadIDs[id] {
					t.Fatalf("node %s marked Down during the leader failover", id)
				}
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := leader.Start(); err != nil {
		t.Fatal(err)
	}
	c.eventually(t, 60*time.Second, func(context.Context) error {
		_, running, _ := runningByNode(t, c.Running()[0].Client(t), id)
		if running != replicas {
			return fmt.Errorf("%d of %d running after failover", running, replicas)
		}
		return nil
	})
	for _, w := range live {
		if got := w.Starts(); got != starts[w.Name] {
			t.Errorf("worker %s started %d tasks during the failover", w.Name, got-starts[w.Name])
		}
	}
	states := nodeStates(t, c.Running()[0].Client(t))
	for id, st := range states {
		if st == objectv1.NodeState_NODE_STATE_DOWN && !deadIDs[id] {
			t.Errorf("node %s Down after the failover", id)
		}
	}
}
