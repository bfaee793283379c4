package main

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

// fakeExec is a control API whose TaskExec echoes: the command's words to
// stdout, its stdin after them, "err" to stderr, and exits with the
// number of words; a task named "missing" is not found.
type fakeExec struct {
	controlv1.UnimplementedControlServer

	mu     sync.Mutex
	starts []*controlv1.TaskExecStart
}

func (f *fakeExec) TaskExec(stream controlv1.Control_TaskExecServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	st := first.GetStart()
	f.mu.Lock()
	f.starts = append(f.starts, st)
	f.mu.Unlock()
	if st.GetTask() == "missing" {
		return status.Error(codes.NotFound, `task "missing" not found`)
	}
	send := func(m *controlv1.TaskExecResponse) { _ = stream.Send(m) }
	send(&controlv1.TaskExecResponse{Msg: &controlv1.TaskExecResponse_Started{Started: &controlv1.TaskExecStarted{TaskId: "t1", NodeId: "n1"}}})
	send(&controlv1.TaskExecResponse{Msg: &controlv1.TaskExecResponse_Stdout{Stdout: []byte(strings.Join(st.GetCmd(), " ") + "\n")}})
	if st.GetStdin() {
		for {
			m, err := stream.Recv()
			if err != nil || m.GetStdinClosed() {
				break
			}
			send(&controlv1.TaskExecResponse{Msg: &controlv1.TaskExecResponse_Stdout{Stdout: m.GetStdin()}})
		}
	}
	send(&controlv1.TaskExecResponse{Msg: &controlv1.TaskExecResponse_Stderr{Stderr: []byte("err\n")}})
	send(&controlv1.TaskExecResponse{Msg: &controlv1.TaskExecResponse_ExitCode{ExitCode: int32(len(st.GetCmd()))}})
	return nil
}

func (f *fakeExec) serve(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "shoal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "control.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	controlv1.RegisterControlServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return "unix://" + path
}

// TestTaskExec: the command's output goes to stdout and stderr, shoal
// exits with its exit status and prints nothing of its own; -i passes
// stdin; flags after TASK are the command's; an error is an error.
func TestTaskExec(t *testing.T) {
	f := &fakeExec{}
	host := f.serve(t)

	c := newTestCLI()
	r := c.run(host, "task", "exec", "-e", "A=1", "-w", "/tmp", "web.1", "--", "echo", "-n", "hi")
	if r.code != 3 || r.stdout != "echo -n hi\n" || r.stderr != "err\n" {
		t.Errorf("exec = %+v, want exit 3, the command's output only", r)
	}
	st := f.starts[0]
	if st.GetTask() != "web.1" || !slices.Equal(st.GetCmd(), []string{"echo", "-n", "hi"}) || !slices.Equal(st.GetEnv(), []string{"A=1"}) ||
		st.GetWorkingDir() != "/tmp" || st.GetStdin() || st.GetTty() {
		t.Errorf("start = %v", st)
	}

	c = newTestCLI()
	c.in = strings.NewReader("typed\n")
	r = c.run(host, "task", "exec", "-i", "web.1", "cat")
	if r.code != 1 || r.stdout != "cat\ntyped\n" {
		t.Errorf("exec -i = %+v, want stdin echoed and exit 1", r)
	}

	r = newTestCLI().run(host, "task", "exec", "missing", "--", "true")
	if r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("exec in a missing task = %+v, want exit 1 and the error", r)
	}
	r = newTestCLI().run(host, "task", "exec", "web.1", "--")
	if r.code != 1 || !strings.Contains(r.stderr, "command is required") {
		t.Errorf("exec without a command = %+v, want an error", r)
	}
}
