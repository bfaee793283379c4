package clustertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// execResult is what a TaskExec stream carried.
type execResult struct {
	started        *controlv1.TaskExecStarted
	stdout, stderr string
	code           int32
}

// runExec runs cmd in task through client, with stdin when not nil.
func runExec(ctx context.Context, client controlv1.ControlClient, task string, cmd []string, stdin *string) (execResult, error) {
	var r execResult
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.TaskExec(ctx)
	if err != nil {
		return r, err
	}
	if err := stream.Send(&controlv1.TaskExecRequest{Msg: &controlv1.TaskExecRequest_Start{Start: &controlv1.TaskExecStart{
		Task: task, Cmd: cmd, Stdin: stdin != nil,
	}}}); err != nil {
		return r, err
	}
	if stdin != nil {
		_ = stream.Send(&controlv1.TaskExecRequest{Msg: &controlv1.TaskExecRequest_Stdin{Stdin: []byte(*stdin)}})
		_ = stream.Send(&controlv1.TaskExecRequest{Msg: &controlv1.TaskExecRequest_StdinClosed{StdinClosed: true}})
	}
	var out, errOut strings.Builder
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return r, errors.New("stream ended without an exit code")
		}
		if err != nil {
			return r, err
		}
		switch m := resp.GetMsg().(type) {
		case *controlv1.TaskExecResponse_Started:
			r.started = m.Started
		case *controlv1.TaskExecResponse_Stdout:
			out.Write(m.Stdout)
		case *controlv1.TaskExecResponse_Stderr:
			errOut.Write(m.Stderr)
		case *controlv1.TaskExecResponse_ExitCode:
			r.stdout, r.stderr, r.code = out.String(), errOut.String(), m.ExitCode
			return r, nil
		}
	}
}

// TestTaskExec runs commands in the tasks of a 3-replica service on
// simulated workers, one per manager (so two reach the leader through a
// follower, their Exec streams relayed), through every manager: output,
// exit code and stdin come through; bad requests are refused.
func TestTaskExec(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := Start(t, 3, Options{})
	client := c.Managers[0].Client(t)
	ws := StartWorkers(t, c, 3, WorkerOptions{})
	c.eventually(t, 60*time.Second, func(context.Context) error {
		states := nodeStates(t, client)
		for _, w := range ws {
			if states[w.NodeID] != objectv1.NodeState_NODE_STATE_READY {
				return fmt.Errorf("worker %s is %v", w.Name, states[w.NodeID])
			}
		}
		return nil
	})
	spec := serviceSpec("web")
	spec.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 3}}
	spec.Task.Placement = &objectv1.Placement{Constraints: []string{"node.role==worker"}}
	ctx := context.Background()
	svc, err := client.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	id := svc.GetService().GetId()
	c.eventually(t, 60*time.Second, func(context.Context) error {
		by, running, _ := runningByNode(t, client, id)
		if running != 3 || len(by) != 3 {
			return fmt.Errorf("%d of 3 tasks running, on %d nodes (want one each)", running, len(by))
		}
		return nil
	})
	resp, err := client.ListTasks(ctx, &controlv1.ListTasksRequest{ServiceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range c.Managers {
		mc := m.Client(t)
		for _, task := range resp.GetTasks() {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			r, err := runExec(ctx, mc, task.GetId(), []string{"sh", "-c", "echo hi; echo oops >&2; exit 3"}, nil)
			if err != nil || r.code != 3 || r.stdout != "hi\n" || r.stderr != "oops\n" || r.started.GetNodeId() != task.GetNodeId() {
				t.Errorf("exec in %s through %s = %+v, %v; want hi, oops and exit code 3 from node %s", task.GetId(), m.Name, r, err, task.GetNodeId())
			}
			in := "from stdin\n"
			r, err = runExec(ctx, mc, task.GetId()[:12], []string{"cat"}, &in)
			if err != nil || r.code != 0 || r.stdout != in {
				t.Errorf("exec cat in %s through %s with stdin = %+v, %v; want its stdin back", task.GetId(), m.Name, r, err)
			}
			cancel()
		}
	}

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		task string
		cmd  []string
		code codes.Code
	}{
		{"nosuchtask", []string{"true"}, codes.NotFound},
		{resp.GetTasks()[0].GetId(), nil, codes.InvalidArgument},
		{"", []string{"true"}, codes.InvalidArgument},
	} {
		_, err := runExec(ctx, client, tc.task, tc.cmd, nil)
		if status.Code(err) != tc.code {
			t.Errorf("exec %q in task %q = %v, want %v", tc.cmd, tc.task, err, tc.code)
		}
	}
}
