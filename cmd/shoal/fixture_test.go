package main

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// IDs of the fixture's objects.
const (
	node1   = "n1q8r2c5x7v0b3m6k9j4h1g2f"
	node2   = "n2w5e8r1t4y7u0i3o6p9a2s5d"
	node3   = "n3z6x9c2v5b8n1m4l7k0j3h6g"
	node4   = "n4t7y0u3i6o9p2a5s8d1f4g7h"
	webID   = "web7c3x9k2m5n8b1v4z7q0w3e"
	dbID    = "db5h8j1k4l7z0x3c6v9b2n5m8"
	frontID = "net4k7m0p3s6v9y2b5e8h1j4l"
)

// seed fills f with a small cluster: four nodes, a replicated service "web"
// with a task history and a pending task, a global service "db", and a
// network "front".
func seed(f *fakeControl) {
	f.leaderID = node1
	node := func(id, host string, role objectv1.NodeRole, state objectv1.NodeState, avail objectv1.NodeAvailability, apiAddr string) *objectv1.Node {
		n := &objectv1.Node{
			Id:   id,
			Meta: &objectv1.Meta{Version: 3},
			Spec: &objectv1.NodeSpec{
				Annotations:  &objectv1.Annotations{Name: host},
				DesiredRole:  role,
				Availability: avail,
			},
			Role:        role,
			Description: &objectv1.NodeDescription{Hostname: host, Platform: "linux/amd64", EngineVersion: "0.1.0"},
			Status:      &objectv1.NodeStatus{State: state, Addr: "10.0.0.1"},
		}
		if role == objectv1.NodeRole_NODE_ROLE_MANAGER {
			n.ManagerStatus = &objectv1.ManagerStatus{ApiAddr: apiAddr, RaftAddr: apiAddr, Weight: 10}
		}
		return n
	}
	const (
		manager = objectv1.NodeRole_NODE_ROLE_MANAGER
		worker  = objectv1.NodeRole_NODE_ROLE_WORKER
		ready   = objectv1.NodeState_NODE_STATE_READY
		down    = objectv1.NodeState_NODE_STATE_DOWN
		active  = objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE
	)
	f.addNode(node(node1, "node-1", manager, ready, active, "10.0.0.1:4243"))
	f.addNode(node(node2, "node-2", manager, ready, objectv1.NodeAvailability_NODE_AVAILABILITY_DRAIN, "10.0.0.2:4243"))
	f.addNode(node(node3, "node-3", manager, down, active, "10.0.0.3:4243"))
	f.addNode(node(node4, "node-4", worker, ready, objectv1.NodeAvailability_NODE_AVAILABILITY_PAUSE, ""))

	web := &objectv1.Service{
		Id:   webID,
		Meta: &objectv1.Meta{Version: 5},
		Spec: &objectv1.ServiceSpec{
			Annotations: &objectv1.Annotations{Name: "web", Labels: map[string]string{"tier": "front"}},
			Task: &objectv1.TaskSpec{
				Container: &objectv1.ContainerSpec{
					Image:           "nginx:1.27",
					Args:            []string{"nginx", "-g", "daemon off;"},
					Env:             []string{"A=1", "B=2"},
					StopGracePeriod: durationpb.New(10 * time.Second),
				},
				Placement: &objectv1.Placement{Constraints: []string{"node.role==worker"}},
			},
			Mode:     &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 3}},
			Endpoint: &objectv1.EndpointSpec{Ports: []*objectv1.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080}}},
		},
		SpecVersion: 2,
	}
	db := &objectv1.Service{
		Id:   dbID,
		Meta: &objectv1.Meta{Version: 6},
		Spec: &objectv1.ServiceSpec{
			Annotations: &objectv1.Annotations{Name: "db"},
			Task: &objectv1.TaskSpec{
				Container: &objectv1.ContainerSpec{Image: "postgres:16"},
				Placement: &objectv1.Placement{MaxReplicasPerNode: 1},
			},
			Mode: &objectv1.ServiceSpec_Global{Global: &objectv1.GlobalService{}},
			Endpoint: &objectv1.EndpointSpec{Ports: []*objectv1.PortConfig{
				{Protocol: "udp", TargetPort: 53, PublishedPort: 5353},
				{TargetPort: 5432},
			}},
		},
		SpecVersion: 1,
	}
	f.addService(web)
	f.addService(db)
	f.networks[frontID] = &objectv1.Network{
		Id:            frontID,
		Meta:          &objectv1.Meta{Version: 4, CreatedAt: ts(time.Hour)},
		Spec:          &objectv1.NetworkSpec{Annotations: &objectv1.Annotations{Name: "front"}},
		Subnet:        "10.192.0.0/16",
		NodePrefixLen: 24,
		NodeSubnets:   map[string]string{node1: "10.192.1.0/24"},
	}

	task := func(id string, svc *objectv1.Service, slot uint64, nodeID string, desired objectv1.TaskState, status *objectv1.TaskStatus, created time.Duration) *objectv1.Task {
		return &objectv1.Task{
			Id:                 id,
			Meta:               &objectv1.Meta{Version: 7, CreatedAt: ts(created)},
			ServiceId:          svc.Id,
			Slot:               slot,
			NodeId:             nodeID,
			Spec:               svc.Spec.Task,
			SpecVersion:        svc.SpecVersion,
			ServiceAnnotations: svc.Spec.Annotations,
			Endpoint:           svc.Spec.Endpoint,
			DesiredState:       desired,
			Status:             status,
		}
	}
	const (
		running  = objectv1.TaskState_TASK_STATE_RUNNING
		shutdown = objectv1.TaskState_TASK_STATE_SHUTDOWN
	)
	f.addTask(task("t1a9s8d7f6g5h4j3k2l1z0x9c", web, 1, node1, running,
		&objectv1.TaskStatus{Timestamp: ts(30 * time.Second), State: running}, time.Minute))
	f.addTask(task("t2q1w2e3r4t5y6u7i8o9p0a1s", web, 2, node4, running,
		&objectv1.TaskStatus{Timestamp: ts(2 * time.Minute), State: running}, 3*time.Minute))
	f.addTask(task("t2z9x8c7v6b5n4m3l2k1j0h9g", web, 2, node4, shutdown,
		&objectv1.TaskStatus{Timestamp: ts(3 * time.Hour), State: objectv1.TaskState_TASK_STATE_FAILED,
			Err: "task: non-zero exit (137): killed by the OOM killer", ExitCode: 137}, 4*time.Hour))
	f.addTask(task("t3m5n6b7v8c9x0z1a2s3d4f5g", web, 3, "", running,
		&objectv1.TaskStatus{Timestamp: ts(5 * time.Second), State: objectv1.TaskState_TASK_STATE_PENDING,
			Message: "waiting for a node to run it"}, 5*time.Second))
	f.addTask(task("t4p0o9i8u7y6t5r4e3w2q1a2s", db, 0, node1, running,
		&objectv1.TaskStatus{Timestamp: ts(49 * time.Hour), State: running}, 50*time.Hour))
}
