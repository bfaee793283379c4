package executortest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func checkConfigure(t *testing.T, h *harness) {
	_, c, configurable := h.fresh(t)
	if c == nil {
		t.Skip("the executor is not a Configurer")
	}
	ctx, cancel := h.ctx(t)
	defer cancel()
	if err := c.Configure(ctx, h.cfg.Node, nil); err != nil {
		t.Errorf("Configure(%+v, empty config) = %v, want nil", h.cfg.Node, err)
	}
	_, c2, _ := h.fresh(t)
	const key = "no_such_key_for_executortest"
	err := c2.Configure(ctx, h.cfg.Node, []byte(key+" = 1\n"))
	switch {
	case !errors.Is(err, sdk.ErrInvalidArgument):
		t.Errorf("Configure with an unknown key = %v, want %v", err, sdk.ErrInvalidArgument)
	case configurable && !strings.Contains(err.Error(), key):
		t.Errorf("Configure with an unknown key = %v, want it to name %s", err, key)
	}
}

func checkExitCodes(t *testing.T, h *harness) {
	e := h.open(t)
	for _, code := range []int{0, 3} {
		before := time.Now()
		id := h.start(t, e, Behaviour{ExitCode: code})
		es := h.wait(t, e, id)
		if es.ExitCode != code || es.OOMKilled {
			t.Errorf("Wait(%s) = %+v, want exit code %d, not OOM-killed", id, es, code)
		}
		if !es.ExitedAt.IsZero() && es.ExitedAt.Before(before.Add(-time.Second)) {
			t.Errorf("Wait(%s).ExitedAt = %s, before the task was started (%s)", id, es.ExitedAt, before)
		}
		if again := h.wait(t, e, id); again.ExitCode != code {
			t.Errorf("second Wait(%s) = %+v, want exit code %d", id, again, code)
		}
		if ti := h.inspect(t, e, id); ti.Running || !ti.Exited || ti.ExitCode != code {
			t.Errorf("Inspect(%s) = %+v, want exited with %d", id, ti, code)
		}
		if ti, ok := h.listed(t, e)[id]; !ok || ti.Running || !ti.Exited || ti.ExitCode != code {
			t.Errorf("List has %s as %+v (listed %v), want exited with %d", id, ti, ok, code)
		}
	}
}

func checkKill(t *testing.T, h *harness) {
	e := h.open(t)
	id := h.start(t, e, Behaviour{Sleep: Forever, IgnoreTerm: true})
	ctx, cancel := h.ctx(t)
	defer cancel()
	start := time.Now()
	if err := e.Stop(ctx, id, "SIGKILL", time.Hour); err != nil {
		t.Fatalf("Stop(%s, SIGKILL) = %v, want nil", id, err)
	}
	if took := time.Since(start); took > h.cfg.Slack {
		t.Errorf("Stop(%s, SIGKILL, grace 1h) took %s, want at once (within %s)", id, took, h.cfg.Slack)
	}
	if es := h.wait(t, e, id); es.ExitCode != 128+executor.SIGKILL {
		t.Errorf("Wait(%s) after SIGKILL = %+v, want exit code %d", id, es, 128+executor.SIGKILL)
	}
}

func checkStopGrace(t *testing.T, h *harness) {
	e := h.open(t)
	grace := h.cfg.Grace

	stubborn := h.start(t, e, Behaviour{Sleep: Forever, IgnoreTerm: true})
	meek := h.start(t, e, Behaviour{Sleep: Forever})
	// Let both shells install their traps before they are signalled.
	h.running(t, e, stubborn, meek)

	ctx, cancel := h.ctx(t)
	defer cancel()
	start := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- e.Stop(ctx, stubborn, "SIGTERM", grace) }()
	// Halfway through the grace period it still runs.
	time.Sleep(grace / 2)
	if ti := h.inspect(t, e, stubborn); !ti.Running {
		t.Errorf("%s into a stop with a grace period of %s, a task that ignores SIGTERM is %+v, want running still", time.Since(start), grace, ti)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Stop(%s, SIGTERM, %s) = %v, want nil", stubborn, grace, err)
	}
	took := time.Since(start)
	if took < grace {
		t.Errorf("Stop of a task that ignores SIGTERM returned after %s, before its grace period %s", took, grace)
	}
	if took > grace+h.cfg.Slack {
		t.Errorf("Stop of a task that ignores SIGTERM returned after %s, want shortly after its grace period %s", took, grace)
	}
	es := h.wait(t, e, stubborn)
	if es.ExitCode != 128+executor.SIGKILL {
		t.Errorf("Wait(%s) after the grace period = %+v, want exit code %d (killed)", stubborn, es, 128+executor.SIGKILL)
	}
	if !es.ExitedAt.IsZero() && es.ExitedAt.Before(start.Add(grace)) {
		t.Errorf("Wait(%s).ExitedAt = %s, %s after the stop began, before its grace period %s", stubborn, es.ExitedAt, es.ExitedAt.Sub(start), grace)
	}

	long := h.cfg.Slack + time.Hour
	start = time.Now()
	if err := e.Stop(ctx, meek, "", long); err != nil {
		t.Fatalf("Stop(%s, default signal, %s) = %v, want nil", meek, long, err)
	}
	if took := time.Since(start); took > h.cfg.Slack {
		t.Errorf("Stop of a task that honours SIGTERM took %s, want within %s", took, h.cfg.Slack)
	}
	if es := h.wait(t, e, meek); es.ExitCode == 128+executor.SIGKILL {
		t.Errorf("Wait(%s) after SIGTERM = %+v, want it not killed", meek, es)
	}
}

// running waits until every task's process runs, as Inspect says, and a
// little more so that a shell has run its first lines.
func (h *harness) running(t *testing.T, e executor.Executor, ids ...string) {
	t.Helper()
	deadline := time.Now().Add(h.cfg.Timeout)
	for _, id := range ids {
		for !h.inspect(t, e, id).Running {
			if time.Now().After(deadline) {
				t.Fatalf("task %s does not run after %s", id, h.cfg.Timeout)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	time.Sleep(200 * time.Millisecond)
}

func checkStopOnce(t *testing.T, h *harness) {
	e := h.open(t)
	ctx, cancel := h.ctx(t)
	defer cancel()
	prepared := h.prepare(t, e, Behaviour{})
	if err := e.Stop(ctx, prepared, "", time.Second); err != nil {
		t.Errorf("Stop of a prepared task = %v, want nil", err)
	}
	if ti := h.inspect(t, e, prepared); ti.Running || ti.Exited {
		t.Errorf("after Stop a prepared task is %+v, want prepared still", ti)
	}
	exited := h.start(t, e, Behaviour{ExitCode: 3})
	h.wait(t, e, exited)
	if err := e.Stop(ctx, exited, "", time.Second); err != nil {
		t.Errorf("Stop of an exited task = %v, want nil", err)
	}
	if es := h.wait(t, e, exited); es.ExitCode != 3 {
		t.Errorf("Wait after Stop of an exited task = %+v, want exit code 3 still", es)
	}
}

func checkLogs(t *testing.T, h *harness) {
	e := h.open(t)
	var b Behaviour
	for i := range 1000 {
		b.Stdout = append(b.Stdout, fmt.Sprintf("out %04d", i))
		b.Stderr = append(b.Stderr, fmt.Sprintf("err %04d", i))
	}
	b.Stdout = append(b.Stdout, "", "ünïcødé and 'quotes' \"both\" $HOME \\n", "last")
	b.Sleep = time.Second

	id := h.prepare(t, e, b)
	ctx, cancel := h.ctx(t)
	defer cancel()

	// A follower from before the start, and one from while it runs.
	type result struct {
		lines []string
		err   error
	}
	var wg sync.WaitGroup
	results := make([]result, 2)
	follow := func(i int) {
		defer wg.Done()
		results[i].lines, results[i].err = lines(ctx, e, id, executor.LogOptions{Follow: true, Tail: -1})
	}
	wg.Add(1)
	go follow(0)
	if err := e.Start(ctx, id); err != nil {
		t.Fatalf("Start(%s) = %v", id, err)
	}
	h.running(t, e, id)
	wg.Add(1)
	go follow(1)
	h.wait(t, e, id)
	wg.Wait() // returns by itself: the task exited
	for i, r := range results {
		if r.err != nil {
			t.Errorf("follower %d: Logs(follow) = %v, want nil once the task exited", i, r.err)
			continue
		}
		checkStreams(t, fmt.Sprintf("follower %d", i), r.lines, b)
	}

	all, err := lines(ctx, e, id, executor.LogOptions{Tail: -1})
	if err != nil {
		t.Fatalf("Logs(tail -1) = %v", err)
	}
	checkStreams(t, "Logs(tail -1)", all, b)
	if got, err := lines(ctx, e, id, executor.LogOptions{Tail: 0}); err != nil || len(got) != 0 {
		t.Errorf("Logs(tail 0) = %d lines, %v, want none", len(got), err)
	}
	tail, err := lines(ctx, e, id, executor.LogOptions{Tail: 10})
	if err != nil || len(tail) != 10 {
		t.Fatalf("Logs(tail 10) = %d lines, %v, want 10", len(tail), err)
	}
	for _, name := range []string{"stdout", "stderr"} {
		if !isSuffix(stream(all, name), stream(tail, name)) {
			t.Errorf("Logs(tail 10) %s lines %q are not the last of the stream", name, stream(tail, name))
		}
	}
	if got, err := lines(ctx, e, id, executor.LogOptions{Tail: 1 << 30, Follow: true}); err != nil || len(got) != len(all) {
		t.Errorf("Logs(tail 2^30, follow) of an exited task = %d lines, %v, want all %d at once", len(got), err, len(all))
	}

	boom := errors.New("executortest: emit refused")
	calls := 0
	err = e.Logs(ctx, id, executor.LogOptions{Tail: -1, Follow: true}, func(executor.LogEntry) error {
		calls++
		return boom
	})
	if !errors.Is(err, boom) || calls != 1 {
		t.Errorf("Logs with an emit that fails = %v after %d calls, want emit's error after 1", err, calls)
	}
}

// checkStreams checks that got holds every line of b, in order per stream.
func checkStreams(t *testing.T, what string, got []string, b Behaviour) {
	t.Helper()
	for _, s := range []struct {
		name string
		want []string
	}{{"stdout", b.Stdout}, {"stderr", b.Stderr}} {
		lines := stream(got, s.name)
		if len(lines) != len(s.want) {
			t.Errorf("%s: %d %s lines, want %d", what, len(lines), s.name, len(s.want))
		}
		for i := range min(len(lines), len(s.want)) {
			if lines[i] != s.want[i] {
				t.Errorf("%s: %s line %d = %q, want %q", what, s.name, i, lines[i], s.want[i])
				break
			}
		}
	}
	if extra := len(got) - len(stream(got, "stdout")) - len(stream(got, "stderr")); extra != 0 {
		t.Errorf("%s: %d lines of neither stream", what, extra)
	}
}

func checkRecover(t *testing.T, h *harness) {
	first := h.open(t)
	runs := h.start(t, first, Behaviour{Sleep: Forever, Stdout: []string{"before the restart"}})
	ended := h.start(t, first, Behaviour{ExitCode: 3})
	h.wait(t, first, ended)
	prepared := h.prepare(t, first, Behaviour{})
	h.running(t, first, runs)
	was := h.inspect(t, first, runs)

	second := h.open(t)
	listed := h.listed(t, second)
	for _, c := range []struct {
		id                     string
		running, exited        bool
		code                   int
		sameContainer, samePid bool
	}{
		{id: runs, running: true, sameContainer: true, samePid: true},
		{id: ended, exited: true, code: 3},
		{id: prepared},
	} {
		ti, ok := listed[c.id]
		if !ok {
			t.Errorf("after a restart List lacks %s", c.id)
			continue
		}
		if ti.Running != c.running || ti.Exited != c.exited || ti.ExitCode != c.code {
			t.Errorf("after a restart List has %s as %+v, want running %v, exited %v with %d", c.id, ti, c.running, c.exited, c.code)
		}
		if c.samePid && (ti.ContainerID != was.ContainerID || ti.Pid != was.Pid) {
			t.Errorf("after a restart %s has container %q pid %d, want the same as before, %q pid %d", c.id, ti.ContainerID, ti.Pid, was.ContainerID, was.Pid)
		}
	}
	if ti := h.inspect(t, second, runs); !ti.Running {
		t.Errorf("after a restart Inspect(%s) = %+v, want running", runs, ti)
	}
	if got, err := lines(t.Context(), second, runs, executor.LogOptions{Tail: -1}); err != nil || len(got) != 1 || got[0] != "stdout before the restart" {
		t.Errorf("after a restart Logs(%s) = %q, %v, want the line written before", runs, got, err)
	}

	waited := make(chan error, 1)
	go func() {
		ctx, cancel := h.ctx(t)
		defer cancel()
		es, err := second.Wait(ctx, runs)
		if err == nil && es.ExitCode == 0 {
			err = errors.New("exit code 0 after a kill")
		}
		waited <- err
	}()
	ctx, cancel := h.ctx(t)
	defer cancel()
	if err := second.Stop(ctx, runs, "SIGKILL", 0); err != nil {
		t.Fatalf("after a restart Stop(%s) = %v, want nil", runs, err)
	}
	if err := <-waited; err != nil {
		t.Errorf("after a restart Wait(%s) = %v, want the kill's exit status", runs, err)
	}
	if err := second.Start(ctx, prepared); err != nil {
		t.Errorf("after a restart Start(%s) of a prepared task = %v, want nil", prepared, err)
	} else if es := h.wait(t, second, prepared); es.ExitCode != 0 {
		t.Errorf("Wait(%s) = %+v, want exit code 0", prepared, es)
	}
}

func checkIdempotent(t *testing.T, h *harness) {
	e := h.open(t)
	b := Behaviour{Sleep: Forever}
	task := h.task(t, e, b)
	id := task.GetId()
	ctx, cancel := h.ctx(t)
	defer cancel()
	for i := range 2 {
		if err := e.Prepare(ctx, task, nil, nil); err != nil {
			t.Fatalf("Prepare #%d = %v, want nil", i+1, err)
		}
	}
	for i := range 2 {
		if err := e.Start(ctx, id); err != nil {
			t.Fatalf("Start #%d = %v, want nil", i+1, err)
		}
	}
	was := h.inspect(t, e, id)
	if err := e.Prepare(ctx, task, nil, nil); err != nil {
		t.Errorf("Prepare of a running task = %v, want nil", err)
	}
	if now := h.inspect(t, e, id); !now.Running || now.Pid != was.Pid {
		t.Errorf("after Prepare of a running task it is %+v, want it running on untouched (%+v)", now, was)
	}

	waited := make(chan error, 1)
	go func() {
		ctx, cancel := h.ctx(t)
		defer cancel()
		_, err := e.Wait(ctx, id)
		if errors.Is(err, sdk.ErrNotFound) {
			err = nil // removed under it: also an answer
		}
		waited <- err
	}()
	for i := range 2 {
		if err := e.Remove(ctx, id); err != nil {
			t.Errorf("Remove #%d = %v, want nil", i+1, err)
		}
	}
	if err := <-waited; err != nil {
		t.Errorf("Wait while the task was removed = %v, want an exit status or %v", err, sdk.ErrNotFound)
	}
	if _, err := e.Inspect(ctx, id); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Inspect after Remove = %v, want %v", err, sdk.ErrNotFound)
	}
	if _, ok := h.listed(t, e)[id]; ok {
		t.Errorf("List after Remove names %s", id)
	}
}

func checkNotFound(t *testing.T, h *harness) {
	e := h.open(t)
	id := h.prefix + "-never"
	ctx, cancel := h.ctx(t)
	defer cancel()
	for _, c := range []struct {
		op  string
		err error
	}{
		{"Start", e.Start(ctx, id)},
		{"Wait", second(e.Wait(ctx, id))},
		{"Inspect", second(e.Inspect(ctx, id))},
		{"Logs", e.Logs(ctx, id, executor.LogOptions{Tail: -1}, func(executor.LogEntry) error { return nil })},
		{"Stats", second(e.Stats(ctx, id))},
	} {
		if !errors.Is(c.err, sdk.ErrNotFound) {
			t.Errorf("%s(unknown task) = %v, want %v", c.op, c.err, sdk.ErrNotFound)
		}
	}
	if err := e.Stop(ctx, id, "", time.Second); err != nil && !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Stop(unknown task) = %v, want nil or %v", err, sdk.ErrNotFound)
	}
	if err := e.Remove(ctx, id); err != nil {
		t.Errorf("Remove(unknown task) = %v, want nil", err)
	}
}

func second[T any](_ T, err error) error { return err }

func checkInvalidArgument(t *testing.T, h *harness) {
	e := h.open(t)
	ctx, cancel := h.ctx(t)
	defer cancel()
	noID := h.cfg.Task("placeholder", Behaviour{})
	noID.Id = ""
	if err := e.Prepare(ctx, noID, nil, nil); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("Prepare(task without id) = %v, want %v", err, sdk.ErrInvalidArgument)
	}
	id := h.start(t, e, Behaviour{Sleep: Forever})
	if err := e.Stop(ctx, id, "SIGNOTASIGNAL", time.Second); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("Stop(signal SIGNOTASIGNAL) = %v, want %v", err, sdk.ErrInvalidArgument)
	}
	if ti := h.inspect(t, e, id); !ti.Running {
		t.Errorf("after a refused Stop the task is %+v, want running", ti)
	}
}

func checkCancellation(t *testing.T, h *harness) {
	e := h.open(t)
	id := h.start(t, e, Behaviour{Sleep: Forever, Stdout: []string{"hello"}})
	const short = 200 * time.Millisecond
	for _, c := range []struct {
		op   string
		call func(ctx context.Context) error
	}{
		{"Wait", func(ctx context.Context) error { return second(e.Wait(ctx, id)) }},
		{"Logs(follow)", func(ctx context.Context) error {
			return e.Logs(ctx, id, executor.LogOptions{Follow: true, Tail: -1}, func(executor.LogEntry) error { return nil })
		}},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), short)
		start := time.Now()
		err := c.call(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s of a running task with a %s deadline = %v, want %v", c.op, short, err, context.DeadlineExceeded)
		}
		if took := time.Since(start); took > short+h.cfg.Slack {
			t.Errorf("%s returned %s after its deadline, want promptly", c.op, took-short)
		}
	}
}

func checkConcurrent(t *testing.T, h *harness) {
	e := h.open(t)
	const n = 16
	var wg sync.WaitGroup
	for i := range n {
		task := h.task(t, e, Behaviour{ExitCode: i % 7, Stdout: []string{fmt.Sprintf("task %d", i)}, Sleep: 100 * time.Millisecond})
		wg.Go(func() {
			ctx, cancel := h.ctx(t)
			defer cancel()
			if err := e.Prepare(ctx, task, nil, nil); err != nil {
				t.Errorf("Prepare(%s) = %v", task.GetId(), err)
				return
			}
			if err := e.Start(ctx, task.GetId()); err != nil {
				t.Errorf("Start(%s) = %v", task.GetId(), err)
				return
			}
			es, err := e.Wait(ctx, task.GetId())
			if err != nil || es.ExitCode != i%7 {
				t.Errorf("Wait(%s) = %+v, %v, want exit code %d", task.GetId(), es, err, i%7)
			}
			got, err := lines(ctx, e, task.GetId(), executor.LogOptions{Tail: -1})
			if want := fmt.Sprintf("stdout task %d", i); err != nil || len(got) != 1 || got[0] != want {
				t.Errorf("Logs(%s) = %q, %v, want [%q]", task.GetId(), got, err, want)
			}
		})
	}
	wg.Wait()
}

func checkStats(t *testing.T, h *harness) {
	e := h.open(t)
	id := h.start(t, e, Behaviour{Sleep: Forever})
	h.running(t, e, id)
	ctx, cancel := h.ctx(t)
	defer cancel()
	before := time.Now()
	st, err := e.Stats(ctx, id)
	if err != nil {
		t.Fatalf("Stats(%s) = %v, want the task's stats", id, err)
	}
	if st.Time.Before(before.Add(-time.Minute)) || st.Time.After(time.Now().Add(time.Minute)) {
		t.Errorf("Stats(%s).Time = %s, want about now (%s)", id, st.Time, before)
	}
	if st.MemoryLimitBytes != 0 && st.MemoryBytes > st.MemoryLimitBytes {
		t.Errorf("Stats(%s) = %+v: memory in use above its limit", id, st)
	}
}

func checkPrepareFails(t *testing.T, h *harness) {
	if h.cfg.Unpreparable == nil {
		t.Skip("Config.Unpreparable is not set")
	}
	e := h.open(t)
	h.n++
	id := fmt.Sprintf("%s-%d", h.prefix, h.n)
	task := h.cfg.Unpreparable(id)
	if task.GetId() != id {
		t.Fatalf("Config.Unpreparable(%q) returned a task with ID %q", id, task.GetId())
	}
	ctx, cancel := h.ctx(t)
	defer cancel()
	err := e.Prepare(ctx, task, nil, nil)
	if err == nil {
		t.Fatalf("Prepare(%s) of a task that cannot be prepared = nil, want an error", id)
	}
	if image := task.GetSpec().GetContainer().GetImage(); image != "" && !strings.Contains(err.Error(), image) {
		t.Errorf("Prepare(%s) = %q, want the error to name the image %q", id, err, image)
	}
	if err := e.Remove(ctx, id); err != nil {
		t.Errorf("Remove after a failed Prepare = %v, want nil", err)
	}
	if ti, err := e.Inspect(ctx, id); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Inspect after Remove = %+v, %v, want %v", ti, err, sdk.ErrNotFound)
	}
}

func checkFiles(t *testing.T, h *harness) {
	if !h.cfg.Files {
		t.Skip("Config.Files is not set")
	}
	e := h.open(t)
	ctx, cancel := h.ctx(t)
	defer cancel()
	sref := &objectv1.FileReference{Id: "xt-secret", Name: "xt_password", Uid: "0", Gid: "0", Mode: 0o400}
	cref := &objectv1.FileReference{Id: "xt-config", Name: "xt.conf", Target: "/etc/xt.conf"}
	withRefs := func(b Behaviour) *objectv1.Task {
		task := h.task(t, e, b)
		c := task.GetSpec().GetContainer()
		if c == nil {
			t.Fatalf("Config.Task returned a task without a container spec: %v", task)
		}
		c.Secrets = append(c.Secrets, sref)
		c.Configs = append(c.Configs, cref)
		return task
	}
	secret := &objectv1.TaskFile{Ref: sref, Secret: true, Data: []byte("xt-" + randomHex(8))}
	config := &objectv1.TaskFile{Ref: cref, Data: []byte("answer = 42\n")}

	missing := withRefs(Behaviour{})
	if err := e.Prepare(ctx, missing, []*objectv1.TaskFile{config}, nil); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("Prepare(%s) of a task referencing a secret without its file = %v, want %v", missing.GetId(), err, sdk.ErrInvalidArgument)
	}
	if ti, err := e.Inspect(ctx, missing.GetId()); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("after a refused Prepare Inspect(%s) = %+v, %v, want %v", missing.GetId(), ti, err, sdk.ErrNotFound)
	}

	task := withRefs(Behaviour{ExitCode: 3})
	if err := e.Prepare(ctx, task, []*objectv1.TaskFile{secret, config}, nil); err != nil {
		t.Fatalf("Prepare(%s) with its secret's and config's files = %v, want nil", task.GetId(), err)
	}
	if err := e.Start(ctx, task.GetId()); err != nil {
		t.Fatalf("Start(%s) = %v, want nil", task.GetId(), err)
	}
	if es := h.wait(t, e, task.GetId()); es.ExitCode != 3 {
		t.Errorf("Wait(%s) = %+v, want exit code 3", task.GetId(), es)
	}
	if err := e.Remove(ctx, task.GetId()); err != nil {
		t.Errorf("Remove(%s) = %v, want nil", task.GetId(), err)
	}
}
