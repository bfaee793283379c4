// Package executortest is the conformance kit for executor plugins. A
// plugin's whole conformance test is one call:
//
//	func TestConformance(t *testing.T) {
//		executortest.Run(t, executortest.Config{
//			New:  func(t *testing.T) executor.Executor { return newExecutor(t) },
//			Task: executortest.ShellTask("registry.local/busybox:1"),
//		})
//	}
//
// Run plays the agent against the executor twice: calling it directly
// (subtests under "InProcess") and through the plugin's real gRPC glue,
// executor.Plugin on one end and executor.Client on the other (subtests
// under "GRPC"), so that a plugin also learns what survives the wire.
// RunBinary runs the same checks against a plugin binary, in any language,
// started as the agent starts it.
//
// The kit runs real processes when the executor does, so it cannot name an
// image or a command itself: Config.Task builds a task that behaves as a
// Behaviour says (print these lines, sleep, exit with this code, ignore
// SIGTERM). ShellTask builds one for any image with a POSIX shell; an
// executor that runs no shell (a simulated one) interprets Behaviour its own
// way, through the task's environment for instance.
//
// The checks, one subtest each:
//
//   - Configure: the node's facts and an empty config are accepted; an
//     unknown key is an InvalidArgument naming it.
//   - ExitCodes: real exit codes (0, 3), from Wait, again from a second
//     Wait, and in Inspect and List.
//   - Kill: SIGKILL ends a task that ignores SIGTERM at once, with 137.
//   - StopGrace: a task that ignores SIGTERM is killed (137) once the grace
//     period has passed, not before; one that honours it stops well within
//     its grace, and is not killed.
//   - StopOnce: stopping a task that does not run (prepared, or exited)
//     succeeds and changes nothing.
//   - Logs: every line, in order per stream, with Tail (-1, 0, N) and with
//     Follow from before the start and from while the task runs; Follow
//     returns by itself once the task exited; emit's error ends Logs.
//   - Recover: a second executor (Config.New called again, as after a
//     restart of the plugin or the agent) lists the tasks the first made,
//     in the same states, and can Wait for and Stop the running one.
//   - Idempotent: Prepare and Start twice succeed; Remove kills a running
//     task, forgets it, and succeeds again on the removed task.
//   - NotFound: Start, Wait, Inspect, Logs and Stats of an unknown task are
//     sdk.ErrNotFound; Remove of one succeeds.
//   - InvalidArgument: a task without an ID and an unknown stop signal are
//     sdk.ErrInvalidArgument.
//   - Files (with Config.Files): Prepare of a task referencing a secret
//     whose file did not come with it is sdk.ErrInvalidArgument; with its
//     file (and a config's) Prepare succeeds and the task runs.
//   - PrepareFails (with Config.Unpreparable): Prepare of a task that cannot
//     be prepared fails with an error naming its image, which is what the
//     user sees; the task can be removed after.
//   - Cancellation: Wait and a following Logs return when their ctx ends.
//   - Concurrent: tasks prepared, started and waited for at once each get
//     their own exit code and their own lines.
//   - Stats: a running task's stats carry the time they were read.
//   - Exec: a command run in a running task (Config.Exec) gets its stdout,
//     stderr and exit code through, reads its stdin (an empty one without
//     it) and leaves the task running; Exec of an unknown task is
//     sdk.ErrNotFound, of one that exited sdk.ErrFailedPrecondition, and
//     without a command sdk.ErrInvalidArgument.
//
// Every task a check makes has an ID unique to the run, and is removed when
// the check ends: an executor whose state outlives the test (a containerd
// namespace) may hold other tasks, which the checks ignore.
package executortest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
	"github.com/shoalhq/shoal/sdk/plugintest"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// Forever is a Behaviour.Sleep for a task that runs until it is stopped.
const Forever = 24 * time.Hour

// Behaviour is what a task's process does: it writes Stdout and Stderr,
// each stream's lines in order, then lives for Sleep, then exits with
// ExitCode. On SIGTERM it exits promptly (with any code), unless IgnoreTerm.
type Behaviour struct {
	Stdout, Stderr []string
	Sleep          time.Duration
	ExitCode       int
	IgnoreTerm     bool
}

// Config says how to run the checks against one executor.
type Config struct {
	// New returns an executor. Called again within a check, it must return
	// one over the same state, as a restarted plugin process would find
	// it: the second one sees the first one's tasks. Required.
	New func(t *testing.T) executor.Executor
	// Task returns a task of this ID whose process behaves as b says.
	// Required unless Image is set.
	Task func(id string, b Behaviour) *objectv1.Task
	// Image, when Task is nil, is an image with a POSIX shell; the tasks
	// are ShellTask(Image)'s.
	Image string
	// Exec returns the command of an Exec that behaves as b says, for the
	// tasks of Task. Default: ShellExec, for tasks with a POSIX shell.
	Exec func(b ExecBehaviour) []string
	// Unpreparable, when set, returns a task of this ID that Prepare
	// cannot prepare: one whose image does not exist, say. The
	// PrepareFails check runs only with it.
	Unpreparable func(id string) *objectv1.Task
	// Files says that the executor takes secrets and configs (Prepare's
	// files); the Files check runs only with it. An executor that cannot
	// keep them off the node's disk leaves it false (and fails the tasks
	// that have any).
	Files bool
	// Node is given to Configure. Default: NodeID "executortest", StateDir
	// a directory of the test's, shared by every executor New returns.
	Node executor.NodeInfo
	// PluginConfig is the [plugins.executor.config] text given to
	// Configure. Default: empty.
	PluginConfig []byte
	// Timeout bounds each call that may take time (Prepare pulls an image,
	// Start starts a process). Default: 30s.
	Timeout time.Duration
	// Grace is the stop grace period of the StopGrace check. Default: 1s.
	Grace time.Duration
	// Slack is how late after its grace period a killed task may exit, and
	// how long a task may take to honour SIGTERM. Default: 5s.
	Slack time.Duration
}

// Run checks that the executor keeps the executor contract. See the package
// comment for the checks.
func Run(t *testing.T, cfg Config) {
	t.Helper()
	if cfg.New == nil {
		t.Fatal("executortest.Config.New is required")
	}
	cfg, run := withDefaults(t, cfg)
	plugintest.BothWays(t, func(t *testing.T, overGRPC bool) {
		way := "i"
		if overGRPC {
			way = "g"
		}
		for _, c := range checks {
			t.Run(c.Name, func(t *testing.T) {
				h := &harness{cfg: cfg, overGRPC: overGRPC, prefix: fmt.Sprintf("xt-%s-%s-%s", run, way, strings.ToLower(c.Name))}
				c.Run(t, h)
			})
		}
	})
}

// RunBinary checks that the executor plugin binary at path keeps the
// executor contract, whatever language it is written in. Every executor a
// check opens is a new process of the binary, started as the agent starts
// it (go-plugin's handshake, gRPC with mutual TLS, sdk.ProtocolVersion); the
// Recover check's second one finds the first one's state, through
// cfg.Node.StateDir. cfg.New is not used. The plugin's stderr goes to the
// test log.
func RunBinary(t *testing.T, path string, cfg Config) {
	t.Helper()
	cfg.New = func(t *testing.T) executor.Executor {
		return plugintest.Start(t, path, sdk.KindExecutor, &executor.Plugin{}).(*executor.Client)
	}
	cfg, run := withDefaults(t, cfg)
	for _, c := range checks {
		t.Run(c.Name, func(t *testing.T) {
			h := &harness{cfg: cfg, binary: true, prefix: fmt.Sprintf("xt-%s-b-%s", run, strings.ToLower(c.Name))}
			c.Run(t, h)
		})
	}
}

// withDefaults fills cfg's unset fields and returns it with a name for the
// run, unique to it, that the task IDs start with.
func withDefaults(t *testing.T, cfg Config) (Config, string) {
	t.Helper()
	if cfg.Task == nil {
		if cfg.Image == "" {
			t.Fatal("executortest.Config needs Task or Image")
		}
		cfg.Task = ShellTask(cfg.Image)
	}
	if cfg.Exec == nil {
		cfg.Exec = ShellExec
	}
	if cfg.Node.NodeID == "" {
		cfg.Node.NodeID = "executortest"
	}
	if cfg.Node.StateDir == "" {
		cfg.Node.StateDir = t.TempDir()
	}
	setDefault(&cfg.Timeout, 30*time.Second)
	setDefault(&cfg.Grace, time.Second)
	setDefault(&cfg.Slack, 5*time.Second)
	return cfg, randomHex(3)
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)
}

// checks are the parts of the contract, one subtest each.
var checks = []plugintest.Check[*harness]{
	{Name: "Configure", Run: checkConfigure},
	{Name: "ExitCodes", Run: checkExitCodes},
	{Name: "Kill", Run: checkKill},
	{Name: "StopGrace", Run: checkStopGrace},
	{Name: "StopOnce", Run: checkStopOnce},
	{Name: "Logs", Run: checkLogs},
	{Name: "Recover", Run: checkRecover},
	{Name: "Idempotent", Run: checkIdempotent},
	{Name: "NotFound", Run: checkNotFound},
	{Name: "InvalidArgument", Run: checkInvalidArgument},
	{Name: "Files", Run: checkFiles},
	{Name: "PrepareFails", Run: checkPrepareFails},
	{Name: "Cancellation", Run: checkCancellation},
	{Name: "Concurrent", Run: checkConcurrent},
	{Name: "Stats", Run: checkStats},
	{Name: "Exec", Run: checkExec},
}

// harness opens executors for one check, in process or over gRPC, and
// names and cleans up its tasks.
type harness struct {
	cfg      Config
	overGRPC bool
	// binary is whether cfg.New starts a plugin binary (RunBinary), whose
	// client is a Configurer whether or not the plugin takes settings.
	binary bool
	prefix string // of the check's task IDs
	n      int
}

// fresh returns a new executor, not configured, and how to configure it:
// the implementation itself, or the gRPC client (which always is a
// Configurer); nil when neither. implConfigurable is whether the
// implementation takes settings.
func (h *harness) fresh(t *testing.T) (e executor.Executor, c executor.Configurer, implConfigurable bool) {
	t.Helper()
	impl := h.cfg.New(t)
	if impl == nil {
		t.Fatal("Config.New returned a nil executor")
	}
	c, implConfigurable = impl.(executor.Configurer)
	if h.binary {
		return impl, c, false
	}
	if !h.overGRPC {
		return impl, c, implConfigurable
	}
	ec := plugintest.OverGRPC[*executor.Client](t, sdk.KindExecutor, &executor.Plugin{Impl: impl})
	return ec, ec, implConfigurable
}

// open returns a new executor configured as the kernel configures it
// after starting the plugin.
func (h *harness) open(t *testing.T) executor.Executor {
	t.Helper()
	e, c, _ := h.fresh(t)
	if c != nil {
		ctx, cancel := h.ctx(t)
		defer cancel()
		if err := c.Configure(ctx, h.cfg.Node, h.cfg.PluginConfig); err != nil {
			t.Fatalf("Configure(%+v, %q) = %v, want nil", h.cfg.Node, h.cfg.PluginConfig, err)
		}
	}
	return e
}

// ctx bounds one call.
func (h *harness) ctx(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), h.cfg.Timeout)
}

// task returns a new task behaving as b, with an ID unique to the run;
// the task is removed from e when the check ends.
func (h *harness) task(t *testing.T, e executor.Executor, b Behaviour) *objectv1.Task {
	t.Helper()
	h.n++
	id := fmt.Sprintf("%s-%d", h.prefix, h.n)
	task := h.cfg.Task(id, b)
	if task.GetId() != id {
		t.Fatalf("Config.Task(%q, ...) returned a task with ID %q", id, task.GetId())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Timeout)
		defer cancel()
		if err := e.Remove(ctx, id); err != nil {
			t.Errorf("cleanup: Remove(%s) = %v", id, err)
		}
	})
	return task
}

// prepare prepares a task behaving as b and returns its ID.
func (h *harness) prepare(t *testing.T, e executor.Executor, b Behaviour) string {
	t.Helper()
	task := h.task(t, e, b)
	ctx, cancel := h.ctx(t)
	defer cancel()
	if err := e.Prepare(ctx, task, nil, func(string) {}); err != nil {
		t.Fatalf("Prepare(%s) = %v, want nil", task.GetId(), err)
	}
	return task.GetId()
}

// start prepares and starts a task behaving as b and returns its ID.
func (h *harness) start(t *testing.T, e executor.Executor, b Behaviour) string {
	t.Helper()
	id := h.prepare(t, e, b)
	ctx, cancel := h.ctx(t)
	defer cancel()
	if err := e.Start(ctx, id); err != nil {
		t.Fatalf("Start(%s) = %v, want nil", id, err)
	}
	return id
}

// wait waits for a task's exit, for at most the timeout.
func (h *harness) wait(t *testing.T, e executor.Executor, id string) executor.ExitStatus {
	t.Helper()
	ctx, cancel := h.ctx(t)
	defer cancel()
	es, err := e.Wait(ctx, id)
	if err != nil {
		t.Fatalf("Wait(%s) = %v, want its exit status", id, err)
	}
	return es
}

// inspect returns a task as the executor holds it.
func (h *harness) inspect(t *testing.T, e executor.Executor, id string) executor.TaskInfo {
	t.Helper()
	ctx, cancel := h.ctx(t)
	defer cancel()
	ti, err := e.Inspect(ctx, id)
	if err != nil {
		t.Fatalf("Inspect(%s) = %v, want the task", id, err)
	}
	if ti.TaskID != id {
		t.Errorf("Inspect(%s).TaskID = %q", id, ti.TaskID)
	}
	return ti
}

// listed returns the tasks List returns with the check's ID prefix, by ID.
func (h *harness) listed(t *testing.T, e executor.Executor) map[string]executor.TaskInfo {
	t.Helper()
	ctx, cancel := h.ctx(t)
	defer cancel()
	list, err := e.List(ctx)
	if err != nil {
		t.Fatalf("List = %v, want the tasks", err)
	}
	out := map[string]executor.TaskInfo{}
	for _, ti := range list {
		if !strings.HasPrefix(ti.TaskID, h.prefix+"-") {
			continue
		}
		if _, dup := out[ti.TaskID]; dup {
			t.Errorf("List names %s twice", ti.TaskID)
		}
		out[ti.TaskID] = ti
	}
	return out
}

// lines returns the lines Logs sends, as "stdout text" and "stderr text".
func lines(ctx context.Context, e executor.Executor, id string, opts executor.LogOptions) ([]string, error) {
	var out []string
	err := e.Logs(ctx, id, opts, func(l executor.LogEntry) error {
		out = append(out, l.Stream.String()+" "+string(l.Line))
		return nil
	})
	return out, err
}

// stream returns the lines of one stream, without the stream's name.
func stream(all []string, name string) []string {
	var out []string
	for _, l := range all {
		if text, ok := strings.CutPrefix(l, name+" "); ok {
			out = append(out, text)
		}
	}
	return out
}

// isSuffix reports whether s ends with tail.
func isSuffix(s, tail []string) bool {
	return len(tail) <= len(s) && slices.Equal(s[len(s)-len(tail):], tail)
}
