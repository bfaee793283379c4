package manager

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

func workerConn(t *testing.T, addr string, id *ca.Identity) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(id.ClientTLS())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestWorkerSeesOnlyItsOwnAssignments: a worker's session is bound to the
// node in its certificate, its assignment set holds only its own tasks, and
// it cannot use the managers' relay to speak for other nodes.
func TestWorkerSeesOnlyItsOwnAssignments(t *testing.T) {
	dir := t.TempDir()
	m := start(t, testConfig(t, filepath.Join(dir, "m1")))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := m.client(t).GetCluster(ctx, &controlv1.GetClusterRequest{})
	if err != nil {
		t.Fatal(err)
	}
	token := cl.GetCluster().GetRootCa().GetJoinTokens().GetWorker()
	addrs := []string{m.cfg.Manager.ListenAddr}
	w1, err := ca.Join(ctx, addrs, token, "w1", "linux/amd64", filepath.Join(dir, "w1"))
	if err != nil {
		t.Fatal(err)
	}
	w2, err := ca.Join(ctx, addrs, token, "w2", "linux/amd64", filepath.Join(dir, "w2"))
	if err != nil {
		t.Fatal(err)
	}
	// Two tasks already placed: one on each worker.
	err = m.m.Raft().Update(ctx, func(tx *state.Tx) error {
		for _, p := range []struct{ id, node string }{{"task-of-w1", w1.NodeID()}, {"task-of-w2", w2.NodeID()}} {
			if err := tx.CreateTask(&objectv1.Task{Id: p.id, ServiceId: "none", NodeId: p.node,
				DesiredState: objectv1.TaskState_TASK_STATE_RUNNING,
				Status:       &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_ASSIGNED}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	stream, err := workerv1.NewDispatcherClient(workerConn(t, m.cfg.Manager.ListenAddr, w1)).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&workerv1.WorkerMessage{Msg: &workerv1.WorkerMessage_Hello{Hello: &workerv1.Hello{
		Description: &objectv1.NodeDescription{Hostname: "w1", Executor: "simulated"},
	}}}); err != nil {
		t.Fatal(err)
	}
	var complete *workerv1.Assignments
	for complete == nil {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if s := msg.GetSession(); s != nil && s.GetNodeId() != w1.NodeID() {
			t.Fatalf("session bound to %s, want the certificate's node %s", s.GetNodeId(), w1.NodeID())
		}
		if a := msg.GetAssignments(); a != nil {
			complete = a
		}
	}
	if len(complete.GetChanges()) != 1 || complete.GetChanges()[0].GetTask().GetId() != "task-of-w1" {
		t.Fatalf("w1's assignment set = %v, want only task-of-w1", complete.GetChanges())
	}
	// A status report about another node's task changes nothing.
	if err := stream.Send(&workerv1.WorkerMessage{Msg: &workerv1.WorkerMessage_Status{Status: &workerv1.StatusReport{Updates: []*workerv1.TaskStatusUpdate{
		{TaskId: "task-of-w2", Status: &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_FAILED}},
		{TaskId: "task-of-w1", Status: &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_RUNNING}},
	}}}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var mine, theirs *objectv1.Task
		m.m.Store().View(func(tx *state.ReadTx) { mine, theirs = tx.Task("task-of-w1"), tx.Task("task-of-w2") })
		if theirs.GetStatus().GetState() != objectv1.TaskState_TASK_STATE_ASSIGNED {
			t.Fatalf("w1 changed w2's task to %v", theirs.GetStatus().GetState())
		}
		if mine.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_RUNNING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("w1's own report was not committed")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The relay is for managers: a worker cannot speak for other nodes.
	relay, err := workerv1.NewRelayClient(workerConn(t, m.cfg.Manager.ListenAddr, w1)).Relay(ctx)
	if err == nil {
		err = relay.Send(&workerv1.RelayUp{Messages: []*workerv1.RelayedWorkerMessage{{StreamId: 1, NodeId: w2.NodeID(),
			Message: &workerv1.WorkerMessage{Msg: &workerv1.WorkerMessage_Hello{Hello: &workerv1.Hello{}}}}}})
		// A stream the server already ended reports io.EOF on Send; its
		// status comes with the next Recv.
		if err == nil || errors.Is(err, io.EOF) {
			_, err = relay.Recv()
		}
	}
	if !errors.Is(sdk.FromGRPC(err), sdk.ErrPermissionDenied) {
		t.Fatalf("Relay with a worker certificate = %v, want PermissionDenied", err)
	}
}
