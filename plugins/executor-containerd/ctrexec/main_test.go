package ctrexec

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"

	"github.com/shoalhq/shoal/internal/testimage"
	"github.com/shoalhq/shoal/kernel/containerd"
	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// testImage is the name the test image is imported under.
const testImage = "docker.io/shoaltest/prog:1"

// env is the containerd every test of the package shares, started once.
var env struct {
	once    sync.Once
	skip    string
	err     error
	address string
	driver  string // the log driver's executable
	dir     string // containerd's config, root and state
	sup     *containerd.Supervisor
	stop    func()
}

// TestMain stops the package's containerd after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if env.stop != nil {
		env.stop()
	}
	os.Exit(code)
}

// buildLogDriver builds cmd/executor-containerd-logdriver into dir: the
// driver the plugin uses in production. A small binary built without the
// race detector starts in milliseconds, where the test binary would take
// about a second under -race, for every container.
func buildLogDriver(dir string) (string, error) {
	out := filepath.Join(dir, "logdriver")
	cmd := exec.Command("go", "build", "-o", out, "../cmd/executor-containerd-logdriver")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the log driver: %v\n%s", err, b)
	}
	return out, nil
}

// startContainerd starts the package's containerd and imports the test
// image, once; it skips the test when containerd cannot run here.
func startContainerd(t testing.TB) string {
	t.Helper()
	env.once.Do(func() {
		if _, err := os.Stat(containerd.DefaultBinary); err != nil {
			env.skip = fmt.Sprintf("containerd is not installed (%v): run scripts/deps.sh", err)
			return
		}
		if os.Geteuid() != 0 {
			env.skip = "containerd needs root"
			return
		}
		dir, err := os.MkdirTemp("", "ctrexec-")
		if err != nil {
			env.err = err
			return
		}
		env.dir = dir
		if env.driver, env.err = buildLogDriver(dir); env.err != nil {
			return
		}
		s, err := containerd.New(containerd.Config{Dir: dir})
		if err != nil {
			env.err = err
			return
		}
		env.sup = s
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := s.Run(ctx); err != nil {
				fmt.Fprintln(os.Stderr, "containerd:", err)
			}
		}()
		env.stop = func() {
			cleanupNamespace(s.Address())
			cancel()
			<-done
			os.RemoveAll(dir)
		}
		rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
		defer rcancel()
		if env.err = s.Ready(rctx); env.err != nil {
			return
		}
		env.address = s.Address()
		env.err = importTestImage(ctx, env.address)
	})
	if env.skip != "" {
		t.Skip(env.skip)
	}
	if env.err != nil {
		t.Fatalf("test containerd: %v", env.err)
	}
	return env.address
}

// testNamespace holds every test's containers.
const testNamespace = "shoaltest"

func importTestImage(ctx context.Context, address string) error {
	im, err := testimage.New(testImage)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := im.WriteOCI(&buf); err != nil {
		return err
	}
	c, err := client.New(address)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = containerd.Import(ctx, c, testNamespace, DefaultConfig().Snapshotter, &buf)
	return err
}

// cleanupNamespace removes what tests left behind (a failed test's tasks),
// so that no process outlives the test binary.
func cleanupNamespace(address string) {
	e := New(Options{LogDriver: env.driver})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir, _ := os.MkdirTemp("", "ctrexec-cleanup-")
	defer os.RemoveAll(dir)
	if err := e.Configure(ctx, executor.NodeInfo{StateDir: dir, ContainerdAddress: address}, []byte(`namespace = "`+testNamespace+`"`)); err != nil {
		return
	}
	defer e.Close()
	infos, _ := e.List(ctx)
	for _, in := range infos {
		e.Remove(ctx, in.TaskID)
	}
}

// newExecutor returns an executor configured against the test containerd,
// with its state in stateDir (a fresh one when empty) and extra config.
func newExecutor(t *testing.T, stateDir, extra string) *Executor {
	t.Helper()
	address := startContainerd(t)
	if stateDir == "" {
		stateDir = t.TempDir()
	}
	e := New(Options{LogDriver: env.driver, Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	config := `namespace = "` + testNamespace + `"` + "\n" + extra
	if err := e.Configure(ctx, executor.NodeInfo{NodeID: "node1", StateDir: stateDir, ContainerdAddress: address}, []byte(config)); err != nil {
		t.Fatalf("Configure = %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// taskCounter makes task IDs unique across the package's tests.
var taskCounter struct {
	sync.Mutex
	n int
}

// newTask is a task of the test image running args.
func newTask(t testing.TB, args ...string) *objectv1.Task {
	taskCounter.Lock()
	taskCounter.n++
	n := taskCounter.n
	taskCounter.Unlock()
	return &objectv1.Task{
		Id:        fmt.Sprintf("t%d-%d", os.Getpid(), n),
		ServiceId: "svc1",
		Slot:      1,
		Spec: &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{
			Image: testImage,
			Args:  args,
		}},
		ServiceAnnotations: &objectv1.Annotations{Name: "web"},
	}
}

// ctxT is a context bounded for one step of a test.
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// run prepares and starts task, removing it when the test ends.
func run(t *testing.T, e *Executor, task *objectv1.Task) {
	t.Helper()
	ctx := ctxT(t)
	if err := e.Prepare(ctx, task, nil, nil); err != nil {
		t.Fatalf("Prepare(%s) = %v", task.Id, err)
	}
	t.Cleanup(func() {
		if err := e.Remove(context.Background(), task.Id); err != nil {
			t.Errorf("Remove(%s) = %v", task.Id, err)
		}
	})
	if err := e.Start(ctx, task.Id); err != nil {
		t.Fatalf("Start(%s) = %v", task.Id, err)
	}
}

// wait waits for the task's exit.
func wait(t *testing.T, e *Executor, id string) executor.ExitStatus {
	t.Helper()
	st, err := e.Wait(ctxT(t), id)
	if err != nil {
		t.Fatalf("Wait(%s) = %v", id, err)
	}
	return st
}

// logs returns all the task's lines as "stream: line".
func logs(t *testing.T, e *Executor, id string, opts executor.LogOptions) []string {
	t.Helper()
	var out []string
	err := e.Logs(ctxT(t), id, opts, func(en executor.LogEntry) error {
		out = append(out, en.Stream.String()+": "+string(en.Line))
		return nil
	})
	if err != nil {
		t.Fatalf("Logs(%s) = %v", id, err)
	}
	return out
}

// streamLines returns the lines of one stream from logs' output.
func streamLines(lines []string, stream string) []string {
	var out []string
	for _, l := range lines {
		if s, ok := strings.CutPrefix(l, stream+": "); ok {
			out = append(out, s)
		}
	}
	return out
}
