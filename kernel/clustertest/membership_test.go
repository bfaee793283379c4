package clustertest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TestMembership covers the managers' lifecycle: a graceful stop of the
// leader hands leadership over first; a demoted manager leaves the Raft
// group and can then be removed; the last manager cannot be demoted.
func TestMembership(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := Start(t, 3, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// Graceful stop of the leader: it transfers leadership before exiting.
	leader := c.Leader(t, 30*time.Second)
	leader.Terminate()
	if !strings.Contains(leader.Log(), "leadership transferred before shutdown") {
		t.Errorf("stopped leader %s did not transfer leadership; log tail:\n%s", leader.Name, tail(leader.Log(), 2000))
	}
	next := c.Leader(t, 10*time.Second)
	if next == leader {
		t.Fatal("the stopped manager is still reported leader")
	}
	if err := leader.Start(); err != nil {
		t.Fatal(err)
	}
	c.WaitManagers(t, 3, 60*time.Second)

	// Demote a follower, promote it back, then remove it.
	leader = c.Leader(t, 30*time.Second)
	var follower *Manager
	for _, m := range c.Running() {
		if m != leader {
			follower = m
			break
		}
	}
	client := leader.Client(t)
	node, err := client.GetNode(ctx, &controlv1.GetNodeRequest{Ref: follower.Name})
	if err != nil {
		t.Fatal(err)
	}
	id := node.GetNode().GetId()
	setRole(ctx, t, client, id, objectv1.NodeRole_NODE_ROLE_WORKER)
	nodes, err := client.ListNodes(ctx, &controlv1.ListNodesRequest{Roles: []objectv1.NodeRole{objectv1.NodeRole_NODE_ROLE_MANAGER}})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.GetNodes()) != 2 {
		t.Fatalf("after demotion: %d managers, want 2", len(nodes.GetNodes()))
	}
	// Writes still commit with the two remaining managers.
	if _, err := client.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: serviceSpec("after-demote")}); err != nil {
		t.Fatalf("write after demotion: %v", err)
	}
	// Promote it back: the running node asks to rejoin (every 2 s) and does.
	setRole(ctx, t, client, id, objectv1.NodeRole_NODE_ROLE_MANAGER)
	if !managersReady(ctx, c, 3, 60*time.Second) {
		t.Fatalf("the re-promoted manager %s did not rejoin the raft group within 60s; its log tail:\n%s", follower.Name, tail(follower.Log(), 3000))
	}

	// A manager that is down while it is demoted misses both the entry
	// recording its new role and its removal from the Raft group. Restarted,
	// its replica still calls it a voting manager, so it campaigns alone and
	// the others refuse its votes. Promoted again, it must still rejoin: it
	// asks its peers once it has known no leader for a while.
	follower.Terminate()
	setRole(ctx, t, client, id, objectv1.NodeRole_NODE_ROLE_WORKER)
	if err := follower.Start(); err != nil {
		t.Fatal(err)
	}
	setRole(ctx, t, client, id, objectv1.NodeRole_NODE_ROLE_MANAGER)
	if !managersReady(ctx, c, 3, 60*time.Second) {
		t.Fatalf("the manager %s, demoted while down and promoted after its restart, did not rejoin the raft group within 60s; its log tail:\n%s", follower.Name, tail(follower.Log(), 3000))
	}
	c.eventually(t, 30*time.Second, func(ctx context.Context) error {
		resp, err := follower.Client(t).ListNodes(LocalRead(ctx), &controlv1.ListNodesRequest{Roles: []objectv1.NodeRole{objectv1.NodeRole_NODE_ROLE_MANAGER}})
		if err != nil {
			return err
		}
		if n := len(resp.GetNodes()); n != 3 {
			return fmt.Errorf("the rejoined manager's own replica lists %d managers, want 3", n)
		}
		return nil
	})

	// Demote it again, stop it, and remove it.
	setRole(ctx, t, client, id, objectv1.NodeRole_NODE_ROLE_WORKER)
	follower.Terminate()
	if _, err := client.RemoveNode(ctx, &controlv1.RemoveNodeRequest{Ref: node.GetNode().Id, Force: true}); err != nil {
		t.Fatalf("rm demoted node: %v", err)
	}
	if _, err := client.GetNode(ctx, &controlv1.GetNodeRequest{Ref: node.GetNode().Id}); err == nil {
		t.Fatal("removed node still listed")
	}

	// A manager cannot be removed without demotion, nor the last one demoted.
	self, err := client.GetNode(ctx, &controlv1.GetNodeRequest{Ref: leader.Name})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.RemoveNode(ctx, &controlv1.RemoveNodeRequest{Ref: self.GetNode().Id, Force: true}); err == nil || !strings.Contains(err.Error(), "demote it first") {
		t.Fatalf("rm of a manager = %v, want a demote-first refusal", err)
	}
}

// managersReady reports whether n managers are recorded ready within
// timeout, asking each running manager with its own deadline.
func managersReady(ctx context.Context, c *Cluster, n int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, m := range c.Running() {
			mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			resp, err := m.Client(c.tb).ListNodes(mctx, &controlv1.ListNodesRequest{})
			cancel()
			if err != nil {
				continue
			}
			ready := 0
			for _, node := range resp.GetNodes() {
				if node.GetManagerStatus().GetApiAddr() != "" && node.GetStatus().GetState() == objectv1.NodeState_NODE_STATE_READY {
					ready++
				}
			}
			if ready >= n {
				return true
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}

// setRole sets a node's desired role through client, failing the test on
// error.
func setRole(ctx context.Context, t *testing.T, client controlv1.ControlClient, id string, role objectv1.NodeRole) {
	t.Helper()
	node, err := client.GetNode(ctx, &controlv1.GetNodeRequest{Ref: id})
	if err != nil {
		t.Fatal(err)
	}
	spec := node.GetNode().GetSpec()
	spec.DesiredRole = role
	if _, err := client.UpdateNode(ctx, &controlv1.UpdateNodeRequest{Ref: id, Version: node.GetNode().GetMeta().GetVersion(), Spec: spec}); err != nil {
		t.Fatalf("set node %s's role to %s: %v", id, role, err)
	}
}
