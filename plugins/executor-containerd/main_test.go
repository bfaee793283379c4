package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/hashicorp/go-plugin"

	"github.com/shoalhq/shoal/internal/testimage"
	"github.com/shoalhq/shoal/kernel/containerd"
	"github.com/shoalhq/shoal/plugins/executor-containerd/ctrexec"
	"github.com/shoalhq/shoal/plugins/executor-containerd/logdriver"
	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// serveEnv makes the test binary run main: it is the plugin process of
// TestSurvivesPluginKill (and, through main, the tasks' log driver).
const serveEnv = "EXECUTOR_CONTAINERD_TEST_SERVE"

func TestMain(m *testing.M) {
	if logdriver.IsDriver(os.Args) || os.Getenv(serveEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestSurvivesPluginKill runs the plugin as a process, as the agent does,
// SIGKILLs it while a container runs, and checks that the container runs
// on untouched, that its output written meanwhile is in its logs, and that
// a new plugin process adopts it.
func TestSurvivesPluginKill(t *testing.T) {
	const namespace = "shoalkill"
	dir, address := startContainerd(t, "plugin-kill-", namespace)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	node := executor.NodeInfo{NodeID: "n1", StateDir: dir + "/state", ContainerdAddress: address}
	config := []byte(`namespace = "` + namespace + `"`)
	first, kill := launch(t, ctx, node, config)
	task := &objectv1.Task{Id: "killtest1", Spec: &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{
		Image: testImage, Args: []string{"out:before", "sleep:1s", "out:after", "err:after", "sleep:inf"},
	}}}
	if err := first.Prepare(ctx, task, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := first.Start(ctx, task.Id); err != nil {
		t.Fatal(err)
	}
	info, err := first.Inspect(ctx, task.Id)
	if err != nil || !info.Running {
		t.Fatalf("Inspect = %+v, %v; want running", info, err)
	}
	kill()
	time.Sleep(2 * time.Second) // the task writes "after" while no plugin runs

	if err := syscall.Kill(info.Pid, 0); err != nil {
		t.Fatalf("the container's process %d is gone after the plugin was killed: %v", info.Pid, err)
	}
	second, _ := launch(t, ctx, node, config)
	defer second.Remove(context.Background(), task.Id)
	list, err := second.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(list, func(ti executor.TaskInfo) bool { return ti.TaskID == task.Id && ti.Running && ti.Pid == info.Pid }) {
		t.Errorf("List after the restart = %+v, want %s running with pid %d", list, task.Id, info.Pid)
	}
	var lines []string
	err = second.Logs(ctx, task.Id, executor.LogOptions{Tail: -1}, func(en executor.LogEntry) error {
		lines = append(lines, en.Stream.String()+" "+string(en.Line))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"stdout before", "stdout after", "stderr after"} {
		if !slices.Contains(lines, want) {
			t.Errorf("logs = %q, want %q (written while the plugin was down)", lines, want)
		}
	}
	if err := second.Stop(ctx, task.Id, "", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if st, err := second.Wait(ctx, task.Id); err != nil || st.ExitCode != 143 {
		t.Errorf("Wait after Stop = %+v, %v; want 143", st, err)
	}
}

// launch starts the plugin process (this test binary running main) over
// go-plugin, configures it, and returns its client and how to SIGKILL it.
func launch(t *testing.T, ctx context.Context, node executor.NodeInfo, config []byte) (*executor.Client, func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), serveEnv+"=1")
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{sdk.ProtocolVersion: {sdk.KindExecutor: &executor.Plugin{}}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		StartTimeout:     30 * time.Second,
	})
	t.Cleanup(pc.Kill)
	rpc, err := pc.Client()
	if err != nil {
		t.Fatalf("start the plugin: %v", err)
	}
	raw, err := rpc.Dispense(sdk.KindExecutor)
	if err != nil {
		t.Fatal(err)
	}
	ec := raw.(*executor.Client)
	if err := ec.Configure(ctx, node, config); err != nil {
		t.Fatalf("Configure = %v", err)
	}
	return ec, func() {
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
	}
}

// testImage is the name the test image (internal/testimage) is imported
// under.
const testImage = "docker.io/shoaltest/prog:1"

// startContainerd starts a private containerd in a new directory named
// after pattern and imports the test image into namespace; it skips the
// test when containerd cannot run here. It returns the directory (for the
// test's own state too) and containerd's address. When the test ends, the
// tasks left in namespace are removed, containerd is stopped and the
// directory removed.
func startContainerd(t *testing.T, pattern, namespace string) (dir, address string) {
	t.Helper()
	if _, err := os.Stat(containerd.DefaultBinary); err != nil {
		t.Skipf("containerd is not installed (%v): run scripts/deps.sh", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("containerd needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sup, err := containerd.New(containerd.Config{Dir: dir + "/containerd"})
	if err != nil {
		t.Fatal(err)
	}
	supCtx, stopSup := context.WithCancel(context.Background())
	supDone := make(chan struct{})
	go func() { defer close(supDone); sup.Run(supCtx) }()
	t.Cleanup(func() { stopSup(); <-supDone })
	if err := sup.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	address = sup.Address()
	im, err := testimage.New(testImage)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := im.WriteOCI(&buf); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(address)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := containerd.Import(ctx, c, namespace, ctrexec.DefaultConfig().Snapshotter, &buf); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeAll(address, namespace) })
	return dir, address
}

// removeAll removes the tasks a failed test left in namespace, so that no
// container outlives the test's containerd.
func removeAll(address, namespace string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir, err := os.MkdirTemp("", "cleanup-")
	if err != nil {
		return
	}
	defer os.RemoveAll(dir)
	e := ctrexec.New(ctrexec.Options{LogDriver: "/bin/true"})
	if err := e.Configure(ctx, executor.NodeInfo{StateDir: dir, ContainerdAddress: address}, []byte(`namespace = "`+namespace+`"`)); err != nil {
		return
	}
	defer e.Close()
	infos, _ := e.List(ctx)
	for _, in := range infos {
		e.Remove(ctx, in.TaskID)
	}
}
