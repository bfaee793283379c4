package dispatch

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/kernel/state/statetest"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// runBound is how long Run may take to return once it has a reason to: a
// safety net against a wedge, far above what returning takes.
const runBound = 20 * time.Second

// startRun runs a dispatcher on e's store with presence p, and returns the
// channel Run's result arrives on.
func startRun(t *testing.T, e *env, p Presence) (*Dispatcher, <-chan error, context.CancelFunc) {
	t.Helper()
	d := New(e.raft, e.st, p, Config{Grace: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-d.done:
		case <-time.After(runBound):
			t.Error("Run did not return after its context ended")
		}
	})
	return d, done, cancel
}

// storeEnv is an env without a running dispatcher: two worker nodes in a
// store written through a fake Raft.
func storeEnv(t *testing.T) *env {
	st := state.New()
	e := &env{t: t, st: st, raft: statetest.NewRaft(st)}
	e.write(func(tx *state.Tx) error {
		for _, id := range []string{"n1", "n2"} {
			if err := tx.CreateNode(&objectv1.Node{Id: id, Role: objectv1.NodeRole_NODE_ROLE_WORKER,
				Spec:        &objectv1.NodeSpec{Availability: objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE},
				Description: &objectv1.NodeDescription{Executor: "simulated"},
				Status:      &objectv1.NodeStatus{State: objectv1.NodeState_NODE_STATE_UNKNOWN}}); err != nil {
				return err
			}
		}
		return nil
	})
	return e
}

// TestRunEndsWhenItsWatchOverflows: a dispatcher whose state watch closes
// (here: one command with more events than the watch may queue) can no
// longer keep its sessions' assignment sets. Run must return an error,
// after all its goroutines (the presence tracker among them) have
// exited, instead of waiting forever for a cancellation that only comes
// once it returns; and a worker opening a session then is refused rather
// than left waiting.
func TestRunEndsWhenItsWatchOverflows(t *testing.T) {
	e := storeEnv(t)
	pres := newFakePresence()
	d, done, _ := startRun(t, e, pres)
	<-pres.ready
	_, p := openOn(t, d, "n1")

	e.st.SetWatchLimit(10)
	e.write(func(tx *state.Tx) error {
		for i := range 50 {
			if err := tx.CreateTask(task(fmt.Sprintf("t%02d", i), "n1", objectv1.TaskState_TASK_STATE_ASSIGNED)); err != nil {
				return err
			}
		}
		return nil
	})

	select {
	case err := <-done:
		if !errors.Is(err, sdk.ErrUnavailable) {
			t.Fatalf("Run = %v, want an Unavailable error (state watch closed)", err)
		}
		t.Logf("Run = %v", err)
	case <-time.After(runBound):
		t.Fatal("Run did not return after its state watch closed")
	}
	// The presence tracker ran under Run's context; Run returned, so it
	// has exited: nothing marks nodes down behind a dead dispatcher.
	pres.mu.Lock()
	down := pres.downFn
	pres.mu.Unlock()
	if down == nil {
		t.Fatal("presence never ran")
	}
	if p.closedErr() == nil {
		t.Error("the open session was not closed when the dispatcher ended")
	}
	openDone := make(chan error, 1)
	go func() {
		_, err := d.Open(context.Background(), "n2", &workerv1.Hello{Description: &objectv1.NodeDescription{Executor: "simulated"}}, &fakePeer{})
		openDone <- err
	}()
	select {
	case err := <-openDone:
		if !errors.Is(err, sdk.ErrUnavailable) {
			t.Fatalf("Open after Run ended = %v, want Unavailable", err)
		}
	case <-time.After(runBound):
		t.Fatal("Open after Run ended waited forever")
	}
}

// failingPresence is a presence tracker whose Run fails at once.
type failingPresence struct{ *fakePresence }

func (failingPresence) Run(context.Context, func([]string)) error {
	return errors.New("tracker broke")
}

// TestRunEndsWhenAPartFails: when one of the dispatcher's goroutines
// stops, the others (the event loop among them) are stopped too and Run
// returns that failure.
func TestRunEndsWhenAPartFails(t *testing.T) {
	e := storeEnv(t)
	_, done, _ := startRun(t, e, failingPresence{newFakePresence()})
	select {
	case err := <-done:
		if err == nil || err.Error() != "presence: tracker broke" {
			t.Fatalf("Run = %v, want the presence tracker's failure (presence: tracker broke)", err)
		}
	case <-time.After(runBound):
		t.Fatal("Run did not return after its presence tracker failed")
	}
}

// TestRunReturnsNilWhenCanceled: leadership lost is not a failure.
func TestRunReturnsNilWhenCanceled(t *testing.T) {
	e := storeEnv(t)
	pres := newFakePresence()
	_, done, cancel := startRun(t, e, pres)
	<-pres.ready
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after its context ended = %v, want nil", err)
		}
	case <-time.After(runBound):
		t.Fatal("Run did not return after its context ended")
	}
}

func openOn(t *testing.T, d *Dispatcher, node string) (*session, *fakePeer) {
	t.Helper()
	p := &fakePeer{}
	s, err := d.Open(context.Background(), node, &workerv1.Hello{Description: &objectv1.NodeDescription{Hostname: node, Executor: "simulated"}}, p)
	if err != nil {
		t.Fatal(err)
	}
	return s, p
}

func (p *fakePeer) closedErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}
