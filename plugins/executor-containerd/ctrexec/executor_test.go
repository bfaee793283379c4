package ctrexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoalhq/shoal/internal/ps"
	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func TestExitCodes(t *testing.T) {
	e := newExecutor(t, "", "")
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"exit:0"}, 0},
		{[]string{"out:x", "exit:3"}, 3},
		{[]string{"exit:255"}, 255},
	} {
		task := newTask(t, tc.args...)
		run(t, e, task)
		st := wait(t, e, task.Id)
		if st.ExitCode != tc.want || st.ExitedAt.IsZero() {
			t.Errorf("%v: Wait = %+v, want exit code %d and a time", tc.args, st, tc.want)
		}
		// Wait deleted containerd's task (and with it the task's shim): the
		// exit is recorded on the container.
		ctx, c, err := e.conn(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		ctr, err := c.LoadContainer(ctx, task.Id)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ctr.Task(ctx, nil); !errdefs.IsNotFound(err) {
			t.Errorf("%v: containerd's task after Wait: %v, want it deleted", tc.args, err)
		}
		// Wait again on the exited process returns the same at once.
		if again := wait(t, e, task.Id); again.ExitCode != tc.want {
			t.Errorf("%v: second Wait = %+v, want %d", tc.args, again, tc.want)
		}
		info, err := e.Inspect(ctxT(t), task.Id)
		if err != nil || !info.Exited || info.Running || info.ExitCode != tc.want {
			t.Errorf("%v: Inspect = %+v, %v; want exited with %d", tc.args, info, err, tc.want)
		}
		if _, err := e.Stats(ctxT(t), task.Id); !errors.Is(err, sdk.ErrFailedPrecondition) {
			t.Errorf("%v: Stats after exit = %v, want ErrFailedPrecondition", tc.args, err)
		}
		// A process that ran is not started again.
		if err := e.Start(ctxT(t), task.Id); !errors.Is(err, sdk.ErrFailedPrecondition) {
			t.Errorf("%v: Start after exit = %v, want ErrFailedPrecondition", tc.args, err)
		}
	}
}

func TestStopEscalates(t *testing.T) {
	e := newExecutor(t, "", "")
	polite := newTask(t, "out:up", "sleep:inf")
	stubborn := newTask(t, "ignore-term", "out:up", "sleep:inf")
	custom := newTask(t, "out:up", "sleep:inf")
	custom.Spec.Container.StopSignal = "SIGINT"
	for _, task := range []*objectv1.Task{polite, stubborn, custom} {
		run(t, e, task)
		waitForLine(t, e, task.Id, "stdout: up")
	}

	start := time.Now()
	if err := e.Stop(ctxT(t), polite.Id, "", 20*time.Second); err != nil {
		t.Fatalf("Stop(polite) = %v", err)
	}
	if st := wait(t, e, polite.Id); st.ExitCode != 128+int(syscall.SIGTERM) {
		t.Errorf("polite exit = %d, want %d (SIGTERM)", st.ExitCode, 128+int(syscall.SIGTERM))
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("polite Stop took %v, want it to return on exit, not after the grace period", d)
	}

	if err := e.Stop(ctxT(t), stubborn.Id, "", 300*time.Millisecond); err != nil {
		t.Fatalf("Stop(stubborn) = %v", err)
	}
	if st := wait(t, e, stubborn.Id); st.ExitCode != 128+int(syscall.SIGKILL) {
		t.Errorf("stubborn exit = %d, want %d (SIGKILL after the grace period)", st.ExitCode, 128+int(syscall.SIGKILL))
	}
	if got := streamLines(logs(t, e, stubborn.Id, executor.LogOptions{Tail: -1}), "stderr"); !slices.Contains(got, "ignored SIGTERM") {
		t.Errorf("stubborn stderr = %q, want it to have seen SIGTERM first", got)
	}

	if err := e.Stop(ctxT(t), custom.Id, "", 20*time.Second); err != nil {
		t.Fatalf("Stop(custom) = %v", err)
	}
	if st := wait(t, e, custom.Id); st.ExitCode != 128+int(syscall.SIGINT) {
		t.Errorf("custom exit = %d, want %d (its stop signal SIGINT)", st.ExitCode, 128+int(syscall.SIGINT))
	}
	// Stopping what does not run is a no-op.
	if err := e.Stop(ctxT(t), custom.Id, "", time.Second); err != nil {
		t.Errorf("Stop of an exited task = %v, want nil", err)
	}
	if err := e.Stop(ctxT(t), "nosuchtask", "", time.Second); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Stop of an unknown task = %v, want ErrNotFound", err)
	}
}

// waitForLine waits until the task's logs have line.
func waitForLine(t *testing.T, e *Executor, id, line string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !slices.Contains(logs(t, e, id, executor.LogOptions{Tail: -1}), line) {
		if time.Now().After(deadline) {
			t.Fatalf("task %s did not log %q within 20s", id, line)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLogsPerStreamInOrder(t *testing.T) {
	e := newExecutor(t, "", "")
	const n = 5000
	task := newTask(t, fmt.Sprintf("outn:%d", n), fmt.Sprintf("errn:%d", n), "out:last")
	run(t, e, task)
	if st := wait(t, e, task.Id); st.ExitCode != 0 {
		t.Fatalf("exit = %d", st.ExitCode)
	}
	// Follow returns once the process exited and every line is sent.
	all := logs(t, e, task.Id, executor.LogOptions{Tail: -1, Follow: true})
	out, errs := streamLines(all, "stdout"), streamLines(all, "stderr")
	if len(out) != n+1 || len(errs) != n {
		t.Fatalf("got %d stdout and %d stderr lines, want %d and %d", len(out), len(errs), n+1, n)
	}
	for i := range n {
		if want := fmt.Sprintf("out %d", i+1); out[i] != want {
			t.Fatalf("stdout[%d] = %q, want %q", i, out[i], want)
		}
		if want := fmt.Sprintf("err %d", i+1); errs[i] != want {
			t.Fatalf("stderr[%d] = %q, want %q", i, errs[i], want)
		}
	}
	if out[n] != "last" {
		t.Errorf("last stdout line = %q, want last", out[n])
	}
	// Tail counts lines across both streams; their interleaving is by the
	// time each line was read, exact within a stream only.
	for _, n := range []int{1, 3, 2*n + 1} {
		if got := logs(t, e, task.Id, executor.LogOptions{Tail: n}); !slices.Equal(got, all[len(all)-n:]) {
			t.Errorf("Tail %d = %q, want %q", n, got, all[len(all)-n:])
		}
	}
	if got := logs(t, e, task.Id, executor.LogOptions{Tail: 0}); len(got) != 0 {
		t.Errorf("Tail 0 = %q, want nothing", got)
	}
}

func TestLogsFollowLiveTask(t *testing.T) {
	e := newExecutor(t, "", "")
	task := newTask(t, "out:one", "err:two", "sleep:300ms", "out:three", "sleep:300ms", "exit:0")
	if err := e.Prepare(ctxT(t), task, nil, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Remove(context.Background(), task.Id) })
	// Following a prepared task waits for it to start and end.
	got := make(chan []string, 1)
	go func() {
		var lines []string
		err := e.Logs(ctxT(t), task.Id, executor.LogOptions{Tail: -1, Follow: true}, func(en executor.LogEntry) error {
			lines = append(lines, en.Stream.String()+": "+string(en.Line))
			return nil
		})
		if err != nil {
			lines = append(lines, "error: "+err.Error())
		}
		got <- lines
	}()
	time.Sleep(200 * time.Millisecond)
	if err := e.Start(ctxT(t), task.Id); err != nil {
		t.Fatal(err)
	}
	select {
	case lines := <-got:
		want := []string{"one", "three"}
		if out := streamLines(lines, "stdout"); !slices.Equal(out, want) {
			t.Errorf("followed stdout = %q, want %q (all: %q)", out, want, lines)
		}
		if errs := streamLines(lines, "stderr"); !slices.Equal(errs, []string{"two"}) {
			t.Errorf("followed stderr = %q, want [two]", errs)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Logs with Follow did not return within 20s of the task's exit")
	}
	// emit's error stops Logs.
	stop := errors.New("enough")
	if err := e.Logs(ctxT(t), task.Id, executor.LogOptions{Tail: -1}, func(executor.LogEntry) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("Logs with a failing emit = %v, want %v", err, stop)
	}
}

// TestLogsFollowSendsLinesAsWritten: following a running task sends its
// tail, then a line written after the follow started (the process writes
// it only once the test signals it), while the task still runs: no line
// waits for the process's end.
func TestLogsFollowSendsLinesAsWritten(t *testing.T) {
	e := newExecutor(t, "", "")
	task := newTask(t, "out:one", "ignore-term", "out:ready", "sleep:inf")
	run(t, e, task)
	waitForLine(t, e, task.Id, "stdout: ready")
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	got := make(chan string, 10)
	done := make(chan error, 1)
	go func() {
		done <- e.Logs(ctx, task.Id, executor.LogOptions{Tail: 1, Follow: true}, func(en executor.LogEntry) error {
			got <- en.Stream.String() + ": " + string(en.Line)
			return nil
		})
	}()
	next := func(want string) {
		t.Helper()
		select {
		case l := <-got:
			if l != want {
				t.Fatalf("followed %q, want %q", l, want)
			}
		case err := <-done:
			t.Fatalf("Logs returned %v before %q came", err, want)
		case <-time.After(20 * time.Second):
			t.Fatalf("%q not followed within 20s", want)
		}
	}
	next("stdout: ready")
	// SIGTERM, ignored: the process writes a line and runs on.
	stopped := make(chan error, 1)
	go func() { stopped <- e.Stop(ctx, task.Id, "SIGTERM", time.Hour) }()
	next("stderr: ignored SIGTERM")
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Logs after cancel = %v, want %v", err, context.Canceled)
	}
	<-stopped // ends with ctx; the task is removed with the test
}

func TestRecoverAfterExecutorRestart(t *testing.T) {
	state := t.TempDir()
	first := newExecutor(t, state, "")
	running := newTask(t, "out:before", "sleep:1s", "out:while-down", "sleep:inf")
	exited := newTask(t, "exit:7")
	prepared := newTask(t, "exit:0")
	for _, task := range []*objectv1.Task{running, exited, prepared} {
		if err := first.Prepare(ctxT(t), task, nil, nil); err != nil {
			t.Fatal(err)
		}
		if task != prepared {
			if err := first.Start(ctxT(t), task.Id); err != nil {
				t.Fatal(err)
			}
		}
	}
	wait(t, first, exited.Id)
	waitForLine(t, first, running.Id, "stdout: before")
	info, err := first.Inspect(ctxT(t), running.Id)
	if err != nil || !info.Running || info.Pid == 0 {
		t.Fatalf("Inspect = %+v, %v; want running with a pid", info, err)
	}
	// Drop the executor, as a plugin that dies does.
	first.Close()
	time.Sleep(1500 * time.Millisecond) // the task writes while no executor exists

	second := newExecutor(t, state, "")
	for _, task := range []*objectv1.Task{running, exited, prepared} {
		t.Cleanup(func() {
			if err := second.Remove(context.Background(), task.Id); err != nil {
				t.Errorf("Remove(%s) = %v", task.Id, err)
			}
		})
	}
	if err := syscall.Kill(info.Pid, 0); err != nil {
		t.Errorf("process %d is gone after the executor was dropped: %v", info.Pid, err)
	}
	list, err := second.List(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]executor.TaskInfo{}
	for _, in := range list {
		byID[in.TaskID] = in
	}
	if got := byID[running.Id]; !got.Running || got.Pid != info.Pid {
		t.Errorf("List has %+v, want running with pid %d", got, info.Pid)
	}
	if got := byID[exited.Id]; !got.Exited || got.ExitCode != 7 {
		t.Errorf("List has %+v, want exited with 7", got)
	}
	if got, ok := byID[prepared.Id]; !ok || got.Running || got.Exited {
		t.Errorf("List has %+v (present %v), want prepared, neither running nor exited", got, ok)
	}
	// The new executor waits on the old process and reads its logs.
	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := second.Wait(short, running.Id); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait on a running task with a short ctx = %v, want DeadlineExceeded", err)
	}
	waitForLine(t, second, running.Id, "stdout: while-down")
	waited := make(chan executor.ExitStatus, 1)
	go func() { st, _ := second.Wait(ctxT(t), running.Id); waited <- st }()
	if err := second.Stop(ctxT(t), running.Id, "", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case st := <-waited:
		if st.ExitCode != 143 {
			t.Errorf("exit after Stop = %d, want 143", st.ExitCode)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Wait of the recovered task did not return after Stop")
	}
	if err := second.Start(ctxT(t), prepared.Id); err != nil {
		t.Errorf("Start of a task prepared by the old executor = %v", err)
	} else if st := wait(t, second, prepared.Id); st.ExitCode != 0 {
		t.Errorf("exit = %d, want 0", st.ExitCode)
	}
}

func TestRemove(t *testing.T) {
	state := t.TempDir()
	e := newExecutor(t, state, "")
	task := newTask(t, "out:hi", "sleep:inf")
	ctx := ctxT(t)
	if err := e.Prepare(ctx, task, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.Prepare(ctx, task, nil, nil); err != nil {
		t.Errorf("second Prepare = %v, want nil", err)
	}
	if err := e.Start(ctx, task.Id); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx, task.Id); err != nil {
		t.Errorf("Start of a running task = %v, want nil", err)
	}
	waitForLine(t, e, task.Id, "stdout: hi")
	info, _ := e.Inspect(ctx, task.Id)
	if err := e.Remove(ctx, task.Id); err != nil {
		t.Fatalf("Remove of a running task = %v", err)
	}
	if err := e.Remove(ctx, task.Id); err != nil {
		t.Errorf("second Remove = %v, want nil", err)
	}
	if _, err := e.Inspect(ctx, task.Id); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Inspect after Remove = %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(filepath.Join(state, "logs", task.Id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("logs after Remove: %v, want them gone", err)
	}
	if err := syscall.Kill(info.Pid, 0); err == nil {
		t.Errorf("process %d still runs after Remove", info.Pid)
	}
	for name, call := range map[string]func() error{
		"Start":   func() error { return e.Start(ctx, task.Id) },
		"Wait":    func() error { _, err := e.Wait(ctx, task.Id); return err },
		"Inspect": func() error { _, err := e.Inspect(ctx, task.Id); return err },
		"Stats":   func() error { _, err := e.Stats(ctx, task.Id); return err },
		"Logs": func() error {
			return e.Logs(ctx, task.Id, executor.LogOptions{}, func(executor.LogEntry) error { return nil })
		},
	} {
		if err := call(); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("%s of a removed task = %v, want ErrNotFound", name, err)
		}
	}
}

func TestContainerSpec(t *testing.T) {
	e := newExecutor(t, "", "")
	hostDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(hostDir, "file"), []byte("from-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		setup func(*objectv1.ContainerSpec)
		want  []string
	}{
		{"image defaults", func(c *objectv1.ContainerSpec) { c.Args = []string{"pwd", "id", "env:IMAGE_ENV"} },
			[]string{"/work", "uid=0 gid=0", "IMAGE_ENV=from-image"}},
		{"image command", func(c *objectv1.ContainerSpec) { c.Args = nil; c.StopGracePeriod = durationpb.New(time.Second) },
			[]string{"default-cmd"}},
		{"overrides", func(c *objectv1.ContainerSpec) {
			c.Args = []string{"pwd", "id", "env:IMAGE_ENV", "env:FOO"}
			c.Env = []string{"FOO=bar", "IMAGE_ENV=from-task"}
			c.Dir = "/tmp"
			c.User = "app"
		}, []string{"/tmp", "uid=1000 gid=1000", "IMAGE_ENV=from-task", "FOO=bar"}},
		{"numeric user", func(c *objectv1.ContainerSpec) { c.Args = []string{"id"}; c.User = "1234:5678" },
			[]string{"uid=1234 gid=5678"}},
		{"command replaces the entrypoint", func(c *objectv1.ContainerSpec) {
			c.Command = []string{"/prog", "out:from-command"}
			c.Args = []string{"out:arg"}
		}, []string{"from-command", "arg"}},
		{"mounts", func(c *objectv1.ContainerSpec) {
			c.Args = []string{"cat:/mnt/ro/file", "write:/mnt/rw/new=written"}
			c.Mounts = []*objectv1.Mount{{Source: hostDir, Target: "/mnt/ro", ReadOnly: true}, {Source: hostDir, Target: "/mnt/rw"}}
		}, []string{"from-host"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			task := newTask(t)
			tc.setup(task.Spec.Container)
			run(t, e, task)
			if tc.name == "image command" {
				waitForLine(t, e, task.Id, "stdout: default-cmd")
				return
			}
			if st := wait(t, e, task.Id); st.ExitCode != 0 {
				t.Errorf("exit = %d; logs %q", st.ExitCode, logs(t, e, task.Id, executor.LogOptions{Tail: -1}))
			}
			if got := streamLines(logs(t, e, task.Id, executor.LogOptions{Tail: -1}), "stdout"); !slices.Equal(got, tc.want) {
				t.Errorf("stdout = %q, want %q", got, tc.want)
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(hostDir, "new")); err != nil || string(b) != "written" {
		t.Errorf("read-write mount: host file = %q, %v; want written", b, err)
	}
}

func TestResourcesAndStats(t *testing.T) {
	e := newExecutor(t, "", "")
	task := newTask(t, "out:up", "sleep:inf")
	task.Spec.Resources = &objectv1.ResourceRequirements{Limits: &objectv1.Resources{NanoCpus: 500_000_000, MemoryBytes: 64 << 20}}
	run(t, e, task)
	waitForLine(t, e, task.Id, "stdout: up")
	st, err := e.Stats(ctxT(t), task.Id)
	if err != nil {
		t.Fatalf("Stats = %v", err)
	}
	if st.MemoryLimitBytes != 64<<20 || st.MemoryBytes == 0 || st.CPUNanos == 0 || st.Time.IsZero() {
		t.Errorf("Stats = %+v, want a 64 MiB limit and non-zero use", st)
	}
	info, _ := e.Inspect(ctxT(t), task.Id)
	ctr, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", info.Pid))
	t.Logf("cgroup of the task: %s", strings.TrimSpace(string(ctr)))
	if !strings.Contains(string(ctr), task.Id) {
		t.Errorf("the task's process is not in its own cgroup: %s", ctr)
	}
}

func TestPrepareRejectsBadSpecs(t *testing.T) {
	e := newExecutor(t, "", "")
	for _, tc := range []struct {
		field string
		setup func(*objectv1.Task)
	}{
		{"task.id", func(tk *objectv1.Task) { tk.Id = "bad/id" }},
		{"task.spec.container.image", func(tk *objectv1.Task) { tk.Spec.Container.Image = "" }},
		{"task.spec.container.image", func(tk *objectv1.Task) { tk.Spec.Container.Image = "a:b:c" }},
		{"task.spec.container.env[0]", func(tk *objectv1.Task) { tk.Spec.Container.Env = []string{"NOEQUALS"} }},
		{"task.spec.container.dir", func(tk *objectv1.Task) { tk.Spec.Container.Dir = "relative" }},
		{"task.spec.container.mounts[0].source", func(tk *objectv1.Task) {
			tk.Spec.Container.Mounts = []*objectv1.Mount{{Source: "/nonexistent/path", Target: "/x"}}
		}},
		{"task.spec.container.mounts[0].target", func(tk *objectv1.Task) {
			tk.Spec.Container.Mounts = []*objectv1.Mount{{Source: "/tmp", Target: "x"}}
		}},
		{"task.spec.container.stop_signal", func(tk *objectv1.Task) { tk.Spec.Container.StopSignal = "SIGNOPE" }},
		{"task.spec.resources.limits.nano_cpus", func(tk *objectv1.Task) {
			tk.Spec.Resources = &objectv1.ResourceRequirements{Limits: &objectv1.Resources{NanoCpus: -1}}
		}},
		{"task.spec.resources.limits.memory_bytes", func(tk *objectv1.Task) {
			tk.Spec.Resources = &objectv1.ResourceRequirements{Limits: &objectv1.Resources{MemoryBytes: 1024}}
		}},
	} {
		task := newTask(t, "exit:0")
		tc.setup(task)
		err := e.Prepare(ctxT(t), task, nil, nil)
		var fe sdk.FieldErrors
		if !errors.As(err, &fe) || !errors.Is(err, sdk.ErrInvalidArgument) || fe[0].Field != tc.field {
			t.Errorf("Prepare with bad %s = %v, want FieldErrors naming it", tc.field, err)
		}
	}
	// A task with networks needs task networking.
	task := newTask(t, "exit:0")
	task.Networks = []*objectv1.NetworkAttachment{{NetworkId: "n1", Addr: "10.0.0.2/24"}}
	if err := e.Prepare(ctxT(t), task, nil, nil); !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Errorf("Prepare with networks and no Network = %v, want ErrFailedPrecondition", err)
	}
}

func TestConfigure(t *testing.T) {
	for _, tc := range []struct {
		config string
		field  string
	}{
		{`namespace = "bad ns"`, "config.namespace"},
		{`snapshotter = "zip"`, "config.snapshotter"},
		{`containerd_address = "relative.sock"`, "config.containerd_address"},
		{`insecure_registries = ["host:99999"]`, "config.insecure_registries[0]"},
		{`pull_timeout = "soon"`, "config.pull_timeout"},
		{`nope = 1`, "config.nope"},
	} {
		err := New(Options{}).Configure(context.Background(), executor.NodeInfo{StateDir: t.TempDir(), ContainerdAddress: "/run/x.sock"}, []byte(tc.config))
		var fe sdk.FieldErrors
		if !errors.As(err, &fe) || fe[0].Field != tc.field {
			t.Errorf("Configure(%s) = %v, want FieldErrors naming %s", tc.config, err, tc.field)
		}
	}
	err := New(Options{}).Configure(context.Background(), executor.NodeInfo{StateDir: t.TempDir()}, nil)
	if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "containerd_address") {
		t.Errorf("Configure without any containerd = %v, want it to name containerd_address", err)
	}
	// A snapshotter containerd lacks or cannot use is refused by name.
	address := startContainerd(t)
	for _, sn := range []string{"zfs", "devmapper"} {
		err := New(Options{}).Configure(ctxT(t), executor.NodeInfo{StateDir: t.TempDir(), ContainerdAddress: address}, []byte(`snapshotter = "`+sn+`"`))
		var fe sdk.FieldErrors
		if !errors.As(err, &fe) || fe[0].Field != "config.snapshotter" {
			t.Errorf("Configure with snapshotter %s = %v, want a FieldError naming config.snapshotter", sn, err)
		} else {
			t.Logf("snapshotter %s: %v", sn, err)
		}
	}
	if err := New(Options{}).Start(context.Background(), "t1"); !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Errorf("Start before Configure = %v, want ErrFailedPrecondition", err)
	}
}

// TestPrepareAfterCrash: a Prepare cut short between the snapshot and the
// container (the plugin died) leaves a snapshot named for the task; the
// retried Prepare succeeds.
func TestPrepareAfterCrash(t *testing.T) {
	e := newExecutor(t, "", "")
	task := newTask(t, "exit:4")
	ctx, c, err := e.conn(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SnapshotService(DefaultConfig().Snapshotter).Prepare(ctx, task.Id, ""); err != nil {
		t.Fatalf("make a stale snapshot: %v", err)
	}
	run(t, e, task)
	if st := wait(t, e, task.Id); st.ExitCode != 4 {
		t.Errorf("exit = %d, want 4", st.ExitCode)
	}
}

func TestOOMKilled(t *testing.T) {
	e := newExecutor(t, "", "")
	task := newTask(t, "alloc:256", "out:survived", "exit:0")
	task.Spec.Resources = &objectv1.ResourceRequirements{Limits: &objectv1.Resources{MemoryBytes: 32 << 20}}
	run(t, e, task)
	st := wait(t, e, task.Id)
	if st.ExitCode != 137 || !st.OOMKilled {
		t.Errorf("Wait = %+v, want 137 and OOMKilled (256 MiB against a 32 MiB limit)", st)
	}
	ok := newTask(t, "alloc:4", "exit:0")
	ok.Spec.Resources = &objectv1.ResourceRequirements{Limits: &objectv1.Resources{MemoryBytes: 32 << 20}}
	run(t, e, ok)
	if st := wait(t, e, ok.Id); st.ExitCode != 0 || st.OOMKilled {
		t.Errorf("Wait = %+v, want 0 and not OOMKilled", st)
	}
}

// TestContainerdRestart kills containerd under a running task: the
// supervisor restarts it, the task runs on, and the same executor (its
// client reconnects) waits for and stops it.
func TestContainerdRestart(t *testing.T) {
	e := newExecutor(t, "", "")
	task := newTask(t, "out:up", "sleep:inf")
	run(t, e, task)
	waitForLine(t, e, task.Id, "stdout: up")
	before, err := e.Inspect(ctxT(t), task.Id)
	if err != nil {
		t.Fatal(err)
	}
	pid := containerdPid(t, env.sup.Address())
	if pid == 0 {
		t.Fatal("no containerd process found")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		after, err := e.Inspect(ctxT(t), task.Id)
		if err == nil && containerdPid(t, env.sup.Address()) != pid {
			if !after.Running || after.Pid != before.Pid {
				t.Fatalf("after containerd's restart, Inspect = %+v, want running with pid %d", after, before.Pid)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the executor did not reach a restarted containerd within 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := e.Stop(ctxT(t), task.Id, "", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if st := wait(t, e, task.Id); st.ExitCode != 143 {
		t.Errorf("exit = %d, want 143", st.ExitCode)
	}
}

// containerdPid is the pid of the containerd serving address (started
// with a config beside its socket), or 0.
func containerdPid(t *testing.T, address string) int {
	t.Helper()
	config := []byte("--config\x00" + filepath.Join(filepath.Dir(address), "config.toml") + "\x00")
	for _, p := range ps.List() {
		if bytes.Contains(p.Cmdline, config) && !p.Zombie() {
			return p.PID
		}
	}
	return 0
}

// TestNativeSnapshotter runs a task with the snapshotter for hosts without
// overlay support; the image, imported for overlayfs, is unpacked for it
// on first use.
func TestNativeSnapshotter(t *testing.T) {
	e := newExecutor(t, "", `snapshotter = "native"`)
	task := newTask(t, "out:native", "exit:5")
	ctx, c, err := e.conn(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	img, err := c.GetImage(ctx, testImage)
	if err != nil {
		t.Fatal(err)
	}
	unpacked, err := img.IsUnpacked(ctx, "native") // by an earlier run (-count)
	if err != nil {
		t.Fatal(err)
	}
	var progress []string
	if err := e.Prepare(ctxT(t), task, nil, func(m string) { progress = append(progress, m) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Remove(context.Background(), task.Id) })
	if unpacked && len(progress) != 0 {
		t.Errorf("progress = %q, want none: the image was unpacked", progress)
	}
	if !unpacked && (len(progress) != 1 || !strings.HasPrefix(progress[0], "unpacking ")) {
		t.Errorf("progress = %q, want one unpacking message", progress)
	}
	if err := e.Start(ctxT(t), task.Id); err != nil {
		t.Fatal(err)
	}
	if st := wait(t, e, task.Id); st.ExitCode != 5 {
		t.Errorf("exit = %d, want 5", st.ExitCode)
	}
}
