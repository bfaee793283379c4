package clustertest

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TestNetworkAddressesAcrossFailover: a service on a network gets one
// address per task from each node's slice, and a new leader, whose IPAM
// plugin starts empty, restores the recorded allocations before handing out
// more: after the leader is SIGKILLed and the service scaled up, every
// address is still unique.
func TestNetworkAddressesAcrossFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	const before, after = 300, 600
	c := Start(t, 3, Options{})
	ws := StartWorkers(t, c, 10, WorkerOptions{})
	c.WaitReady(t, ws, 60*time.Second)
	leader := c.Leader(t, 30*time.Second)
	client := leader.Client(t)
	ctx := context.Background()
	if _, err := client.CreateNetwork(ctx, &controlv1.CreateNetworkRequest{Spec: &objectv1.NetworkSpec{
		Annotations: &objectv1.Annotations{Name: "front"}, Subnet: "10.88.0.0/16", NodePrefixLen: 24,
	}}); err != nil {
		t.Fatal(err)
	}
	spec := serviceSpec("web")
	spec.Task.Networks = []*objectv1.NetworkAttachmentConfig{{Target: "front"}}
	spec.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: before}}
	svc, err := client.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	id := svc.GetService().GetId()
	allRunning := func(client controlv1.ControlClient, want int) func(context.Context) error {
		return func(ctx context.Context) error {
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
			if running != want {
				return fmt.Errorf("%d of %d running", running, want)
			}
			return nil
		}
	}
	c.eventually(t, 90*time.Second, allRunning(client, before))
	checkAddresses(t, client, id, before)

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
		spec.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: after}}
		_, err = client.UpdateService(ctx, &controlv1.UpdateServiceRequest{Ref: id, Version: got.GetService().GetMeta().GetVersion(), Spec: spec})
		return err
	})
	c.eventually(t, 90*time.Second, allRunning(client, after))
	checkAddresses(t, client, id, after)
}

// checkAddresses checks that the service's running tasks, want of them,
// hold distinct addresses, each in its node's slice of the network.
func checkAddresses(t *testing.T, client controlv1.ControlClient, serviceID string, want int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.ListTasks(ctx, &controlv1.ListTasksRequest{ServiceIds: []string{serviceID}})
	if err != nil {
		t.Fatal(err)
	}
	nets, err := client.ListNetworks(ctx, &controlv1.ListNetworksRequest{Names: []string{"front"}})
	if err != nil || len(nets.GetNetworks()) != 1 {
		t.Fatalf("ListNetworks(front) = %v, %v", nets, err)
	}
	slices := nets.GetNetworks()[0].GetNodeSubnets()
	seen := map[netip.Addr]string{}
	n := 0
	for _, tk := range resp.GetTasks() {
		if tk.GetStatus().GetState() != objectv1.TaskState_TASK_STATE_RUNNING {
			continue
		}
		n++
		if len(tk.GetNetworks()) != 1 {
			t.Errorf("task %s: networks %v, want one attachment", tk.Id, tk.GetNetworks())
			continue
		}
		at := tk.GetNetworks()[0]
		p, err := netip.ParsePrefix(at.GetAddr())
		if err != nil {
			t.Errorf("task %s: address %q: %v", tk.Id, at.GetAddr(), err)
			continue
		}
		if other, ok := seen[p.Addr()]; ok {
			t.Errorf("%s held by tasks %s and %s", p.Addr(), other, tk.Id)
		}
		seen[p.Addr()] = tk.Id
		if s := slices[tk.GetNodeId()]; s == "" || !netip.MustParsePrefix(s).Contains(p.Addr()) {
			t.Errorf("task %s on node %s: %s is not in the node's slice %q", tk.Id, tk.GetNodeId(), p.Addr(), s)
		}
	}
	if n != want {
		t.Errorf("%d tasks running, want %d", n, want)
	}
}
