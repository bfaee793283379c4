package dispatch

import (
	"context"
	"errors"
	"io"
	"testing"

	"google.golang.org/grpc"

	"github.com/shoalhq/shoal/sdk"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// fakeWire is a worker's Exec stream as the leader serves it: Recv gives
// what up brings, Send records.
type fakeWire struct {
	grpc.ServerStream
	ctx  context.Context
	up   chan *workerv1.ExecUp
	down chan *workerv1.ExecDown
}

func newFakeWire() *fakeWire {
	return &fakeWire{ctx: context.Background(), up: make(chan *workerv1.ExecUp, 16), down: make(chan *workerv1.ExecDown, 16)}
}

func (w *fakeWire) Context() context.Context { return w.ctx }

func (w *fakeWire) Recv() (*workerv1.ExecUp, error) {
	m, ok := <-w.up
	if !ok {
		return nil, io.EOF
	}
	return m, nil
}

func (w *fakeWire) Send(m *workerv1.ExecDown) error {
	w.down <- m
	return nil
}

// execStarts are the ExecStarts p received.
func execStarts(p *fakePeer) []*workerv1.ExecStart {
	var out []*workerv1.ExecStart
	for _, m := range p.messages() {
		if s := m.GetExecStart(); s != nil {
			out = append(out, s)
		}
	}
	return out
}

// TestExecAttach: an exec goes to its node's session, and only that node
// may attach to it, once; its output and end come through, checked.
func TestExecAttach(t *testing.T) {
	e := newEnv(t)
	e.open("n2")
	_, p1 := e.open("n1")

	type started struct {
		conn *ExecConn
		err  error
	}
	res := make(chan started, 1)
	go func() {
		c, err := e.d.StartExec(context.Background(), ExecRequest{NodeID: "n1", TaskID: "t1", Spec: &workerv1.ExecSpec{Cmd: []string{"true"}}})
		res <- started{c, err}
	}()
	var start *workerv1.ExecStart
	eventually(t, "an exec start on n1", func() bool {
		if s := execStarts(p1); len(s) > 0 {
			start = s[0]
			return true
		}
		return false
	})
	if start.GetTaskId() != "t1" || start.GetExecId() == "" {
		t.Fatalf("exec start = %v", start)
	}
	ctx := context.Background()
	if err := e.d.attachExec(ctx, "n2", start.GetExecId(), newFakeWire()); !errors.Is(err, sdk.ErrPermissionDenied) {
		t.Errorf("n2 attaching to n1's exec = %v, want %v", err, sdk.ErrPermissionDenied)
	}
	if err := e.d.attachExec(ctx, "n1", "guessed", newFakeWire()); !errors.Is(err, sdk.ErrPermissionDenied) {
		t.Errorf("attaching to an exec never sent = %v, want %v", err, sdk.ErrPermissionDenied)
	}
	w := newFakeWire()
	attached := make(chan error, 1)
	go func() { attached <- e.d.attachExec(ctx, "n1", start.GetExecId(), w) }()
	r := <-res
	if r.err != nil {
		t.Fatalf("StartExec = %v", r.err)
	}
	if err := e.d.attachExec(ctx, "n1", start.GetExecId(), newFakeWire()); !errors.Is(err, sdk.ErrPermissionDenied) {
		t.Errorf("attaching twice = %v, want %v", err, sdk.ErrPermissionDenied)
	}
	if err := r.conn.Send(&workerv1.ExecDown{Msg: &workerv1.ExecDown_Stdin{Stdin: []byte("in")}}); err != nil || string((<-w.down).GetStdin()) != "in" {
		t.Errorf("stdin did not reach the worker: %v", err)
	}
	w.up <- &workerv1.ExecUp{Msg: &workerv1.ExecUp_Stdout{Stdout: []byte("out")}}
	w.up <- &workerv1.ExecUp{Msg: &workerv1.ExecUp_End{End: &workerv1.ExecEnd{ExitCode: 3}}}
	if m, err := r.conn.Recv(); err != nil || string(m.GetStdout()) != "out" {
		t.Errorf("Recv = %v, %v; want stdout", m, err)
	}
	if m, err := r.conn.Recv(); err != nil || m.GetEnd().GetExitCode() != 3 {
		t.Errorf("Recv = %v, %v; want the end, exit code 3", m, err)
	}
	if _, err := r.conn.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("Recv after the end = %v, want EOF", err)
	}
	r.conn.Close()
	if err := <-attached; err != nil {
		t.Errorf("the worker's stream ended with %v, want nil once the exec was done", err)
	}

	// A worker that breaks the protocol ends the exec with an error.
	go func() {
		c, err := e.d.StartExec(context.Background(), ExecRequest{NodeID: "n1", TaskID: "t1", Spec: &workerv1.ExecSpec{Cmd: []string{"true"}}})
		res <- started{c, err}
	}()
	eventually(t, "a second exec start", func() bool { return len(execStarts(p1)) == 2 })
	w = newFakeWire()
	go func() { attached <- e.d.attachExec(ctx, "n1", execStarts(p1)[1].GetExecId(), w) }()
	r = <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	w.up <- &workerv1.ExecUp{Msg: &workerv1.ExecUp_Stdout{Stdout: make([]byte, maxExecChunk+1)}}
	if _, err := r.conn.Recv(); err == nil {
		t.Error("Recv of an oversized piece = nil error")
	}
	r.conn.Close()
	<-attached
}

// TestExecBounds: a node runs at most maxExecsPerNode execs, and one that
// is not connected runs none.
func TestExecBounds(t *testing.T) {
	e := newEnv(t)
	_, p1 := e.open("n1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, maxExecsPerNode)
	for range maxExecsPerNode {
		go func() {
			_, err := e.d.StartExec(ctx, ExecRequest{NodeID: "n1", TaskID: "t1", Spec: &workerv1.ExecSpec{Cmd: []string{"true"}}})
			errs <- err
		}()
	}
	eventually(t, "every exec sent", func() bool { return len(execStarts(p1)) == maxExecsPerNode })
	if _, err := e.d.StartExec(ctx, ExecRequest{NodeID: "n1", TaskID: "t1"}); !errors.Is(err, sdk.ErrResourceExhausted) {
		t.Errorf("one exec too many = %v, want %v", err, sdk.ErrResourceExhausted)
	}
	if _, err := e.d.StartExec(ctx, ExecRequest{NodeID: "n2", TaskID: "t2"}); !errors.Is(err, sdk.ErrUnavailable) {
		t.Errorf("exec on a node without a session = %v, want %v", err, sdk.ErrUnavailable)
	}
	cancel()
	for range maxExecsPerNode {
		<-errs
	}
	e.d.execs.mu.Lock()
	defer e.d.execs.mu.Unlock()
	if len(e.d.execs.byID) != 0 || len(e.d.execs.byNode) != 0 {
		t.Errorf("execs left after their callers went: %d, by node %v", len(e.d.execs.byID), e.d.execs.byNode)
	}
}
