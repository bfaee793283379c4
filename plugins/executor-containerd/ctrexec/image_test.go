package ctrexec

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/shoalhq/shoal/internal/testimage"
	"github.com/shoalhq/shoal/sdk"
)

func TestPullFromRegistry(t *testing.T) {
	e := newExecutor(t, "", "")
	host := testimage.Registry(t)
	image := host + "/shoal/pulled:1"
	im, err := testimage.New(image)
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Push(ctxT(t), host, "shoal/pulled", "1"); err != nil {
		t.Fatal(err)
	}
	task := newTask(t, "out:pulled", "exit:0")
	task.Spec.Container.Image = image
	var mu sync.Mutex
	var progress []string
	if err := e.Prepare(ctxT(t), task, nil, func(m string) {
		mu.Lock()
		progress = append(progress, m)
		mu.Unlock()
	}); err != nil {
		t.Fatalf("Prepare = %v", err)
	}
	t.Cleanup(func() { e.Remove(context.Background(), task.Id) })
	mu.Lock()
	if len(progress) < 2 || progress[0] != "pulling "+image || !strings.HasPrefix(progress[len(progress)-1], "pulled "+image) {
		t.Errorf("progress = %q, want pulling ... pulled %s", progress, image)
	}
	mu.Unlock()
	if err := e.Start(ctxT(t), task.Id); err != nil {
		t.Fatal(err)
	}
	if st := wait(t, e, task.Id); st.ExitCode != 0 {
		t.Errorf("exit = %d, want 0", st.ExitCode)
	}
	// The image is on the node now: the next task does not pull it.
	again := newTask(t, "exit:0")
	again.Spec.Container.Image = image
	progress = nil
	if err := e.Prepare(ctxT(t), again, nil, func(m string) { progress = append(progress, m) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Remove(context.Background(), again.Id) })
	if len(progress) != 0 {
		t.Errorf("second Prepare reported %q, want no pull", progress)
	}
}

func TestPullErrorsNameTheImage(t *testing.T) {
	e := newExecutor(t, "", "")
	host := testimage.Registry(t)
	// A port that nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	for _, image := range []string{
		host + "/shoal/missing:1", // the registry does not have it
		closed + "/shoal/prog:1",  // no registry there
	} {
		task := newTask(t, "exit:0")
		task.Spec.Container.Image = image
		err := e.Prepare(ctxT(t), task, nil, nil)
		if err == nil {
			e.Remove(context.Background(), task.Id)
			t.Errorf("Prepare(%s) = nil, want an error", image)
			continue
		}
		if !strings.Contains(err.Error(), image) {
			t.Errorf("Prepare(%s) = %v, want an error naming the image", image, err)
		}
		if _, ierr := e.Inspect(ctxT(t), task.Id); !errors.Is(ierr, sdk.ErrNotFound) {
			t.Errorf("after a failed pull, Inspect = %v, want ErrNotFound (nothing created)", ierr)
		}
		t.Logf("Prepare(%s) = %v", image, err)
	}
}

func TestConcurrentPreparesPullOnce(t *testing.T) {
	e := newExecutor(t, "", "")
	host := testimage.Registry(t)
	image := host + "/shoal/many:1"
	im, err := testimage.New(image)
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Push(ctxT(t), host, "shoal/many", "1"); err != nil {
		t.Fatal(err)
	}
	const n = 4
	var wg sync.WaitGroup
	var mu sync.Mutex
	pulls := 0
	for range n {
		task := newTask(t, "exit:0")
		task.Spec.Container.Image = image
		t.Cleanup(func() { e.Remove(context.Background(), task.Id) })
		wg.Go(func() {
			err := e.Prepare(ctxT(t), task, nil, func(m string) {
				if m == "pulling "+image {
					mu.Lock()
					pulls++
					mu.Unlock()
				}
			})

			if err != nil {
				t.Errorf("Prepare = %v", err)
			}
		})
	}
	wg.Wait()
	if pulls != 1 {
		t.Errorf("%d concurrent Prepares pulled %d times, want once", n, pulls)
	}
}

func TestKeyedLock(t *testing.T) {
	var k keyedLock
	unlock, err := k.lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	other, err := k.lock(context.Background(), "b") // another key is free
	if err != nil {
		t.Fatal(err)
	}
	other()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := k.lock(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Errorf("lock of a held key with an ended ctx = %v, want Canceled", err)
	}
	got := make(chan struct{})
	go func() {
		u, err := k.lock(context.Background(), "a")
		if err == nil {
			u()
		}
		close(got)
	}()
	unlock()
	<-got
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.locks) != 0 {
		t.Errorf("%d locks left after every holder released, want 0", len(k.locks))
	}
}
