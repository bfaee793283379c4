package simexec

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func newTask(id string, env ...string) *objectv1.Task {
	return &objectv1.Task{Id: id, Spec: &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{
		Image: "sim", Env: env, StopGracePeriod: durationpb.New(time.Second),
	}}}
}

func TestPrepareEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     []string
		wantErr error  // a kind, or nil
		wantMsg string // a substring of the error
	}{
		{name: "plain"},
		{name: "exit after", env: []string{"SHOAL_SIM_EXIT_AFTER=1s", "SHOAL_SIM_EXIT_CODE=3"}},
		{name: "unrelated env", env: []string{"PATH=/bin", "NOEQUALS"}},
		{name: "fail prepare", env: []string{"SHOAL_SIM_FAIL_PREPARE=image not found"}, wantMsg: "image not found"},
		{name: "bad duration", env: []string{"SHOAL_SIM_EXIT_AFTER=soon"}, wantErr: sdk.ErrInvalidArgument, wantMsg: "SHOAL_SIM_EXIT_AFTER"},
		{name: "negative duration", env: []string{"SHOAL_SIM_EXIT_AFTER=-1s"}, wantErr: sdk.ErrInvalidArgument},
		{name: "bad code", env: []string{"SHOAL_SIM_EXIT_CODE=x"}, wantErr: sdk.ErrInvalidArgument},
		{name: "code out of range", env: []string{"SHOAL_SIM_EXIT_CODE=256"}, wantErr: sdk.ErrInvalidArgument},
		{name: "bad ignore stop", env: []string{"SHOAL_SIM_IGNORE_STOP=maybe"}, wantErr: sdk.ErrInvalidArgument},
		{name: "output", env: []string{"SHOAL_SIM_STDOUT=a\nb", "SHOAL_SIM_STDERR=c", "SHOAL_SIM_LOG_LINES=3"}},
		{name: "bad log lines", env: []string{"SHOAL_SIM_LOG_LINES=-1"}, wantErr: sdk.ErrInvalidArgument, wantMsg: "SHOAL_SIM_LOG_LINES"},
		{name: "too many log lines", env: []string{"SHOAL_SIM_LOG_LINES=1000001"}, wantErr: sdk.ErrInvalidArgument},
		{name: "bad prepare time", env: []string{"SHOAL_SIM_PREPARE_TIME=0s"}, wantErr: sdk.ErrInvalidArgument, wantMsg: "SHOAL_SIM_PREPARE_TIME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := New(Config{})
			err := e.Prepare(t.Context(), newTask("t1", tt.env...), nil, nil)
			failed := tt.wantErr != nil || tt.wantMsg != ""
			if (err != nil) != failed {
				t.Fatalf("Prepare(env %q) = %v, want error %v", tt.env, err, failed)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Prepare(env %q) = %v, want kind %v", tt.env, err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Prepare(env %q) = %v, want it to mention %q", tt.env, err, tt.wantMsg)
			}
			list, _ := e.List(t.Context())
			if held := len(list) == 1; held == failed {
				t.Errorf("after Prepare(env %q) List = %v, want held %v", tt.env, list, !failed)
			}
		})
	}
}

// TestLifecycle runs tasks through their lives on the bubble's clock.
func TestLifecycle(t *testing.T) {
	tests := []struct {
		name  string
		env   []string
		stop  bool          // stop the task after start
		grace time.Duration // for stop
		want  int           // exit code
		took  time.Duration // from Start to exit, on the fake clock
	}{
		{name: "exits by itself", env: []string{"SHOAL_SIM_EXIT_AFTER=3s"}, want: 0, took: 3 * time.Second},
		{name: "fails by itself", env: []string{"SHOAL_SIM_EXIT_AFTER=2s", "SHOAL_SIM_EXIT_CODE=42"}, want: 42, took: 2 * time.Second},
		{name: "stopped", stop: true, grace: 5 * time.Second, want: 0, took: 0},
		{name: "ignores stop, killed after grace", env: []string{"SHOAL_SIM_IGNORE_STOP=1"}, stop: true, grace: 5 * time.Second, want: KilledExitCode, took: 5 * time.Second},
		{name: "ignores stop, no grace", env: []string{"SHOAL_SIM_IGNORE_STOP=true"}, stop: true, want: KilledExitCode, took: 0},
		{name: "stopped before exiting by itself", env: []string{"SHOAL_SIM_EXIT_AFTER=1h", "SHOAL_SIM_EXIT_CODE=1"}, stop: true, want: 0, took: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := t.Context()
				e := New(Config{})
				if err := e.Prepare(ctx, newTask("t1", tt.env...), nil, nil); err != nil {
					t.Fatal(err)
				}
				if err := e.Start(ctx, "t1"); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				if tt.stop {
					if err := e.Stop(ctx, "t1", "", tt.grace); err != nil {
						t.Fatalf("Stop = %v", err)
					}
				}
				es, err := e.Wait(ctx, "t1")
				if err != nil || es.ExitCode != tt.want || !es.ExitedAt.Equal(start.Add(tt.took)) {
					t.Errorf("Wait = %+v, %v, want exit code %d at %s, nil", es, err, tt.want, start.Add(tt.took))
				}
				if took := time.Since(start); took != tt.took {
					t.Errorf("process lived %s, want %s", took, tt.took)
				}
				list, _ := e.List(ctx)
				want := executor.TaskInfo{TaskID: "t1", Exited: true, ExitCode: tt.want, ContainerID: "sim-t1"}
				if len(list) != 1 || list[0] != want {
					t.Errorf("List = %+v, want [%+v]", list, want)
				}
				if err := e.Start(ctx, "t1"); !errors.Is(err, sdk.ErrFailedPrecondition) {
					t.Errorf("Start after exit = %v, want %v", err, sdk.ErrFailedPrecondition)
				}
				if n := e.Starts("t1"); n != 1 {
					t.Errorf("Starts = %d, want 1", n)
				}
			})
		})
	}
}

func TestStartDelayAndIdempotence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		e := New(Config{StartDelay: 2 * time.Second})
		if err := e.Start(ctx, "missing"); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("Start(missing) = %v, want %v", err, sdk.ErrNotFound)
		}
		if err := e.Prepare(ctx, newTask("t1"), nil, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Wait(ctx, "t1"); !errors.Is(err, sdk.ErrFailedPrecondition) {
			t.Errorf("Wait before Start = %v, want %v", err, sdk.ErrFailedPrecondition)
		}
		start := time.Now()
		if err := e.Start(ctx, "t1"); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took != 2*time.Second {
			t.Errorf("Start took %s, want 2s", took)
		}
		// Preparing and starting again changes nothing.
		if err := e.Prepare(ctx, newTask("t1", "SHOAL_SIM_EXIT_AFTER=1s"), nil, nil); err != nil {
			t.Errorf("Prepare again = %v, want nil", err)
		}
		if err := e.Start(ctx, "t1"); err != nil {
			t.Errorf("Start again = %v, want nil", err)
		}
		et, err := e.Inspect(ctx, "t1")
		if err != nil || !et.Running || et.Pid == 0 {
			t.Errorf("Inspect = %+v, %v, want running with a pid", et, err)
		}
		time.Sleep(time.Hour)
		if et, _ := e.Inspect(ctx, "t1"); !et.Running {
			t.Errorf("Inspect after an hour = %+v, want still running (no exit-after from the second Prepare)", et)
		}
		if n := e.Starts("t1"); n != 1 {
			t.Errorf("Starts = %d, want 1", n)
		}
	})
}

func TestStartCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := New(Config{StartDelay: time.Minute})
		if err := e.Prepare(t.Context(), newTask("t1"), nil, nil); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if err := e.Start(ctx, "t1"); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Start = %v, want %v", err, context.DeadlineExceeded)
		}
		if n := e.Starts("t1"); n != 0 {
			t.Errorf("Starts = %d, want 0", n)
		}
	})
}

func TestRemoveKills(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		e := New(Config{})
		for _, id := range []string{"a", "b"} {
			if err := e.Prepare(ctx, newTask(id, "SHOAL_SIM_IGNORE_STOP=1"), nil, nil); err != nil {
				t.Fatal(err)
			}
			if err := e.Start(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		waited := make(chan int)
		go func() {
			es, _ := e.Wait(ctx, "a")
			waited <- es.ExitCode
		}()
		synctest.Wait()
		if err := e.Remove(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if code := <-waited; code != KilledExitCode {
			t.Errorf("Wait of a removed task = %d, want %d", code, KilledExitCode)
		}
		if err := e.Remove(ctx, "a"); err != nil {
			t.Errorf("Remove again = %v, want nil", err)
		}
		if _, err := e.Wait(ctx, "a"); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("Wait after Remove = %v, want %v", err, sdk.ErrNotFound)
		}
		if err := e.Stop(ctx, "a", "", time.Second); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("Stop after Remove = %v, want %v", err, sdk.ErrNotFound)
		}
		list, _ := e.List(ctx)
		if len(list) != 1 || list[0].TaskID != "b" || !list[0].Running {
			t.Errorf("List = %+v, want b running", list)
		}
	})
}

func TestStopCancelledKillsLater(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := New(Config{})
		if err := e.Prepare(t.Context(), newTask("t1", "SHOAL_SIM_IGNORE_STOP=1"), nil, nil); err != nil {
			t.Fatal(err)
		}
		if err := e.Start(t.Context(), "t1"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if err := e.Stop(ctx, "t1", "", 10*time.Second); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Stop = %v, want %v", err, context.DeadlineExceeded)
		}
		// A second stop does not push the kill back.
		if err := e.Stop(t.Context(), "t1", "", time.Hour); err != nil {
			t.Errorf("second Stop = %v", err)
		}
		if took := time.Since(start); took != 10*time.Second {
			t.Errorf("killed after %s, want 10s", took)
		}
	})
}

// BenchmarkLifecycle measures one task's whole life: what a simulated node
// costs per task.
func BenchmarkLifecycle(b *testing.B) {
	ctx := context.Background()
	e := New(Config{})
	tasks := make([]*objectv1.Task, 1024)
	for i := range tasks {
		tasks[i] = newTask(fmt.Sprintf("task-%d", i), "SHOAL_SIM_EXIT_AFTER=1h")
	}
	i := 0
	for b.Loop() {
		t := tasks[i%len(tasks)]
		i++
		if err := e.Prepare(ctx, t, nil, nil); err != nil {
			b.Fatal(err)
		}
		if err := e.Start(ctx, t.Id); err != nil {
			b.Fatal(err)
		}
		if err := e.Stop(ctx, t.Id, "", time.Second); err != nil {
			b.Fatal(err)
		}
		if err := e.Remove(ctx, t.Id); err != nil {
			b.Fatal(err)
		}
	}
}

func TestStopSignals(t *testing.T) {
	tests := []struct {
		name   string
		env    []string
		spec   string // the spec's stop_signal
		signal string // Stop's
		want   int
		took   time.Duration
	}{
		{name: "kill is not ignored", env: []string{"SHOAL_SIM_IGNORE_STOP=1"}, signal: "SIGKILL", want: KilledExitCode},
		{name: "kill by number", signal: "9", want: KilledExitCode},
		{name: "spec's signal is kill", env: []string{"SHOAL_SIM_IGNORE_STOP=1"}, spec: "KILL", want: KilledExitCode},
		{name: "Stop's signal wins over the spec's", env: []string{"SHOAL_SIM_IGNORE_STOP=1"}, spec: "KILL", signal: "SIGTERM", want: KilledExitCode, took: 5 * time.Second},
		{name: "honoured", signal: "SIGINT", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := t.Context()
				e := New(Config{})
				task := newTask("t1", tt.env...)
				task.Spec.Container.StopSignal = tt.spec
				if err := e.Prepare(ctx, task, nil, nil); err != nil {
					t.Fatal(err)
				}
				if err := e.Start(ctx, "t1"); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				if err := e.Stop(ctx, "t1", tt.signal, 5*time.Second); err != nil {
					t.Fatalf("Stop = %v", err)
				}
				es, err := e.Wait(ctx, "t1")
				if err != nil || es.ExitCode != tt.want {
					t.Errorf("Wait = %+v, %v, want exit code %d", es, err, tt.want)
				}
				if took := time.Since(start); took != tt.took {
					t.Errorf("stopped after %s, want %s", took, tt.took)
				}
			})
		})
	}
}

func TestBadSignals(t *testing.T) {
	ctx := t.Context()
	e := New(Config{})
	bad := newTask("bad", "SHOAL_SIM_EXIT_AFTER=1h")
	bad.Spec.Container.StopSignal = "SIGNOPE"
	if err := e.Prepare(ctx, bad, nil, nil); !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "stop_signal") {
		t.Errorf("Prepare with stop_signal SIGNOPE = %v, want %v naming stop_signal", err, sdk.ErrInvalidArgument)
	}
	if err := e.Prepare(ctx, newTask("t1"), nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	for _, sig := range []string{"SIGNOPE", "0", "65", "-9"} {
		if err := e.Stop(ctx, "t1", sig, time.Second); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("Stop(signal %q) = %v, want %v", sig, err, sdk.ErrInvalidArgument)
		}
	}
	if ti, _ := e.Inspect(ctx, "t1"); !ti.Running {
		t.Errorf("after refused Stops Inspect = %+v, want running", ti)
	}
}

func TestPrepareTimeReportsProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := New(Config{})
		var msgs []string
		start := time.Now()
		if err := e.Prepare(t.Context(), newTask("t1", "SHOAL_SIM_PREPARE_TIME=2s"), nil, func(m string) { msgs = append(msgs, m) }); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took != 2*time.Second {
			t.Errorf("Prepare took %s, want 2s", took)
		}
		if len(msgs) != prepareSteps || msgs[0] != "pulling sim: 10%" || msgs[len(msgs)-1] != "pulling sim: 100%" {
			t.Errorf("progress = %q, want %d messages from %q to %q", msgs, prepareSteps, "pulling sim: 10%", "pulling sim: 100%")
		}

		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if err := e.Prepare(ctx, newTask("t2", "SHOAL_SIM_PREPARE_TIME=1h"), nil, nil); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Prepare cancelled = %v, want %v", err, context.DeadlineExceeded)
		}
		if _, err := e.Inspect(t.Context(), "t2"); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("Inspect after a cancelled Prepare = %v, want %v", err, sdk.ErrNotFound)
		}
	})
}

// collect runs Logs and returns the lines it sent, as "stream line".
func collect(ctx context.Context, e *Executor, id string, opts executor.LogOptions) ([]string, error) {
	var out []string
	err := e.Logs(ctx, id, opts, func(l executor.LogEntry) error {
		out = append(out, l.Stream.String()+" "+string(l.Line))
		return nil
	})
	return out, err
}

func TestLogs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		e := New(Config{})
		if err := e.Prepare(ctx, newTask("t1", "SHOAL_SIM_STDOUT=a\nb", "SHOAL_SIM_STDERR=oops", "SHOAL_SIM_LOG_LINES=2", "SHOAL_SIM_EXIT_AFTER=10s"), nil, nil); err != nil {
			t.Fatal(err)
		}
		if got, err := collect(ctx, e, "t1", executor.LogOptions{Tail: -1}); err != nil || len(got) != 0 {
			t.Errorf("Logs before start = %q, %v, want none", got, err)
		}
		// A follower from before the start sees every line, and returns
		// when the process exits.
		followed := make(chan []string)
		go func() {
			got, err := collect(ctx, e, "t1", executor.LogOptions{Tail: -1, Follow: true})
			if err != nil {
				t.Errorf("Logs(follow) = %v", err)
			}
			followed <- got
		}()
		synctest.Wait()
		if err := e.Start(ctx, "t1"); err != nil {
			t.Fatal(err)
		}
		all := []string{"stdout a", "stdout b", "stderr oops", "stdout line 1", "stdout line 2"}
		if got := <-followed; !slices.Equal(got, all) {
			t.Errorf("Logs(follow) = %q, want %q", got, all)
		}
		for _, tt := range []struct {
			tail int
			want []string
		}{
			{tail: -1, want: all},
			{tail: 0, want: nil},
			{tail: 2, want: all[3:]},
			{tail: 100, want: all},
		} {
			if got, err := collect(ctx, e, "t1", executor.LogOptions{Tail: tt.tail}); err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("Logs(tail %d) = %q, %v, want %q", tt.tail, got, err, tt.want)
			}
		}
		boom := errors.New("boom")
		if err := e.Logs(ctx, "t1", executor.LogOptions{Tail: -1}, func(executor.LogEntry) error { return boom }); err != boom {
			t.Errorf("Logs with a failing emit = %v, want %v", err, boom)
		}
		if _, err := collect(ctx, e, "missing", executor.LogOptions{}); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("Logs(missing) = %v, want %v", err, sdk.ErrNotFound)
		}
	})
}

func TestLogsFollowEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		e := New(Config{})
		if err := e.Prepare(ctx, newTask("t1", "SHOAL_SIM_LOG_LINES=1"), nil, nil); err != nil {
			t.Fatal(err)
		}
		if err := e.Start(ctx, "t1"); err != nil {
			t.Fatal(err)
		}
		// Following a running task ends when ctx does...
		fctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		got, err := collect(fctx, e, "t1", executor.LogOptions{Tail: -1, Follow: true})
		if !errors.Is(err, context.DeadlineExceeded) || !slices.Equal(got, []string{"stdout line 1"}) {
			t.Errorf("Logs(follow) until ctx ends = %q, %v, want [stdout line 1], %v", got, err, context.DeadlineExceeded)
		}
		// ... or when the task is removed.
		done := make(chan error)
		go func() {
			_, err := collect(ctx, e, "t1", executor.LogOptions{Tail: 0, Follow: true})
			done <- err
		}()
		synctest.Wait()
		if err := e.Remove(ctx, "t1"); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Errorf("Logs(follow) of a removed task = %v, want nil", err)
		}
	})
}

func TestStats(t *testing.T) {
	e := New(Config{})
	if _, err := e.Stats(t.Context(), "t1"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Stats(missing) = %v, want %v", err, sdk.ErrNotFound)
	}
	if err := e.Prepare(t.Context(), newTask("t1"), nil, nil); err != nil {
		t.Fatal(err)
	}
	st, err := e.Stats(t.Context(), "t1")
	if err != nil || st.Time.IsZero() || st.CPUNanos != 0 || st.MemoryBytes != 0 {
		t.Errorf("Stats = %+v, %v, want zeros at a time", st, err)
	}
}
