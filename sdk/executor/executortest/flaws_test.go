//go:build linux

package executortest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shoalhq/shoal/sdk/executor"
	"github.com/shoalhq/shoal/sdk/executor/executortest"
)

// flawEnv names the flaw TestFlawedExecutor runs the kit against, in a
// child process of TestRunCatchesFlaws.
const flawEnv = "EXECUTORTEST_FLAW"

// flawed is procExec with one method broken; the others pass through.
type flawed struct {
	procExec
	wait      func(procExec, context.Context, string) (executor.ExitStatus, error)
	stop      func(procExec, context.Context, string, string, time.Duration) error
	remove    func(procExec, context.Context, string) error
	list      func(procExec, context.Context) ([]executor.TaskInfo, error)
	inspect   func(procExec, context.Context, string) (executor.TaskInfo, error)
	logs      func(procExec, context.Context, string, executor.LogOptions, func(executor.LogEntry) error) error
	configure func(procExec, context.Context, executor.NodeInfo, []byte) error
}

func (f flawed) Wait(ctx context.Context, id string) (executor.ExitStatus, error) {
	if f.wait != nil {
		return f.wait(f.procExec, ctx, id)
	}
	return f.procExec.Wait(ctx, id)
}

func (f flawed) Stop(ctx context.Context, id, signal string, grace time.Duration) error {
	if f.stop != nil {
		return f.stop(f.procExec, ctx, id, signal, grace)
	}
	return f.procExec.Stop(ctx, id, signal, grace)
}

func (f flawed) Remove(ctx context.Context, id string) error {
	if f.remove != nil {
		return f.remove(f.procExec, ctx, id)
	}
	return f.procExec.Remove(ctx, id)
}

func (f flawed) List(ctx context.Context) ([]executor.TaskInfo, error) {
	if f.list != nil {
		return f.list(f.procExec, ctx)
	}
	return f.procExec.List(ctx)
}

func (f flawed) Inspect(ctx context.Context, id string) (executor.TaskInfo, error) {
	if f.inspect != nil {
		return f.inspect(f.procExec, ctx, id)
	}
	return f.procExec.Inspect(ctx, id)
}

func (f flawed) Logs(ctx context.Context, id string, opts executor.LogOptions, emit func(executor.LogEntry) error) error {
	if f.logs != nil {
		return f.logs(f.procExec, ctx, id, opts, emit)
	}
	return f.procExec.Logs(ctx, id, opts, emit)
}

func (f flawed) Configure(ctx context.Context, node executor.NodeInfo, config []byte) error {
	if f.configure != nil {
		return f.configure(f.procExec, ctx, node, config)
	}
	return f.procExec.Configure(ctx, node, config)
}

var flaws = map[string]flawed{
	"wrong-exit-code": {wait: func(e procExec, ctx context.Context, id string) (executor.ExitStatus, error) {
		es, err := e.Wait(ctx, id)
		es.ExitCode = 1
		return es, err
	}},
	"kills-at-once": {stop: func(e procExec, ctx context.Context, id, _ string, _ time.Duration) error {
		return e.Stop(ctx, id, "SIGKILL", 0)
	}},
	"drops-lines": {logs: func(e procExec, ctx context.Context, id string, opts executor.LogOptions, emit func(executor.LogEntry) error) error {
		n := 0
		return e.Logs(ctx, id, opts, func(l executor.LogEntry) error {
			if n++; n%100 == 50 {
				return nil
			}
			return emit(l)
		})
	}},
	"forgets-on-restart": {list: func(procExec, context.Context) ([]executor.TaskInfo, error) { return nil, nil }},
	"remove-not-idempotent": {remove: func(e procExec, ctx context.Context, id string) error {
		if _, err := e.Inspect(ctx, id); err != nil {
			return err
		}
		return e.Remove(ctx, id)
	}},
	"untyped-not-found": {inspect: func(e procExec, ctx context.Context, id string) (executor.TaskInfo, error) {
		ti, err := e.Inspect(ctx, id)
		if err != nil {
			err = errors.New("no such task")
		}
		return ti, err
	}},
	// A Wait whose ctx ends says the process exited with 0.
	"ignores-cancel": {wait: func(e procExec, ctx context.Context, id string) (executor.ExitStatus, error) {
		es, err := e.Wait(ctx, id)
		if ctx.Err() != nil {
			return executor.ExitStatus{}, nil
		}
		return es, err
	}},
	"accepts-any-config": {configure: func(procExec, context.Context, executor.NodeInfo, []byte) error { return nil }},
}

// TestRunCatchesFlaws runs checks of the kit, in a child process, against
// executors that each break a rule, and checks that the kit fails them
// with a message that says what is wrong.
func TestRunCatchesFlaws(t *testing.T) {
	cases := []struct {
		flaw  string
		check string // the check that must fail, in process and over gRPC
		msg   string // in the output
	}{
		{"wrong-exit-code", "ExitCodes", "want exit code 0, not OOM-killed"},
		{"kills-at-once", "StopGrace", "before its grace period"},
		{"drops-lines", "Logs", "stdout line 49 = \"out 0050\", want \"out 0049\""},
		{"forgets-on-restart", "Recover", "after a restart List lacks"},
		{"remove-not-idempotent", "Idempotent", "Remove #2 = "},
		{"untyped-not-found", "NotFound", "Inspect(unknown task) = no such task, want not found"},
		{"ignores-cancel", "Cancellation", "Wait of a running task with a 200ms deadline = <nil>"},
		{"accepts-any-config", "Configure", "Configure with an unknown key = <nil>, want invalid argument"},
	}
	if len(cases) != len(flaws) {
		t.Fatalf("%d cases for %d flaws, want one case per flaw", len(cases), len(flaws))
	}
	for _, tc := range cases {
		t.Run(tc.flaw, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestFlawedExecutor$/^(InProcess|GRPC)$/^"+tc.check+"$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), flawEnv+"="+tc.flaw)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the kit passed an executor that %s, want it to fail:\n%s", tc.flaw, out)
			}
			for _, mode := range []string{"InProcess", "GRPC"} {
				if tc.flaw == "ignores-cancel" && mode == "GRPC" {
					continue // over gRPC the client's own deadline ends the call
				}
				if !strings.Contains(string(out), "--- FAIL: TestFlawedExecutor/"+mode+"/"+tc.check+" ") {
					t.Errorf("the kit did not fail check %s/%s for an executor that %s:\n%s", mode, tc.check, tc.flaw, out)
				}
			}
			if !strings.Contains(string(out), tc.msg) {
				t.Errorf("the kit's output for an executor that %s lacks %q:\n%s", tc.flaw, tc.msg, out)
			}
		})
	}
}

// TestFlawedExecutor is the child process of TestRunCatchesFlaws.
func TestFlawedExecutor(t *testing.T) {
	name := os.Getenv(flawEnv)
	if name == "" {
		t.Skip("run by TestRunCatchesFlaws")
	}
	f, ok := flaws[name]
	if !ok {
		t.Fatalf("unknown flaw %q", name)
	}
	f.procExec = procExec{newProcState()}
	executortest.Run(t, executortest.Config{
		New:  func(*testing.T) executor.Executor { return f },
		Task: executortest.ShellTask("unused"),
	})
}
