package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/shoalhq/shoal/plugins/executor-containerd/ctrexec"
	"github.com/shoalhq/shoal/sdk/executor"
	"github.com/shoalhq/shoal/sdk/executor/executortest"
	"github.com/shoalhq/shoal/sdk/plugintest"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TestConformanceBinary runs the SDK's conformance kit against the plugin
// binary as the agent runs it: built from this package, one process per
// executor a check opens, over go-plugin's handshake and mutual TLS, told
// containerd's address and its state directory through Configure's node
// info. ctrexec's TestConformance checks the same executor in process; this
// checks what only the binary does (main's Serve, its stdio, the log
// driver beside it, task networking at Configure) and that the tasks, their
// logs and their exit codes outlive a process (Recover's second executor is
// a second process).
func TestConformanceBinary(t *testing.T) {
	const namespace = "shoalconf"
	dir, address := startContainerd(t, "plugin-conformance-", namespace)
	bin := plugintest.Build(t, ".")
	// Installed as in production: the log driver beside the plugin.
	driver := exec.Command("go", "build", "-o", filepath.Join(filepath.Dir(bin), ctrexec.LogDriverName), "./cmd/"+ctrexec.LogDriverName)
	driver.Env = append(driver.Environ(), "CGO_ENABLED=0")
	if out, err := driver.CombinedOutput(); err != nil {
		t.Fatalf("build the log driver: %v\n%s", err, out)
	}
	executortest.RunBinary(t, bin, executortest.Config{
		Task:  progTask,
		Exec:  progExec,
		Files: true,
		// An image of a registry that does not exist: 127.0.0.1:1 refuses
		// connections at once.
		Unpreparable: func(id string) *objectv1.Task {
			return &objectv1.Task{Id: id, Spec: &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "127.0.0.1:1/shoal/absent:1"}}}
		},
		Node:         executor.NodeInfo{NodeID: "executortest", StateDir: filepath.Join(dir, "state"), ContainerdAddress: address},
		PluginConfig: []byte(`namespace = "` + namespace + `"`),
	})
}

// progTask is a task of the test image whose program behaves as b says.
func progTask(id string, b executortest.Behaviour) *objectv1.Task {
	var args []string
	if b.IgnoreTerm {
		args = append(args, "ignore-term")
	}
	for _, l := range b.Stdout {
		args = append(args, "out:"+l)
	}
	for _, l := range b.Stderr {
		args = append(args, "err:"+l)
	}
	if b.Sleep > 0 {
		args = append(args, "sleep:"+b.Sleep.String())
	}
	args = append(args, fmt.Sprintf("exit:%d", b.ExitCode))
	return &objectv1.Task{Id: id, Spec: &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: testImage, Args: args}}}
}

// progExec is the command of an Exec in a task of progTask that behaves as
// b says.
func progExec(b executortest.ExecBehaviour) []string {
	cmd := []string{"/prog"}
	if b.Stdout != "" {
		cmd = append(cmd, "out:"+b.Stdout)
	}
	if b.Stderr != "" {
		cmd = append(cmd, "err:"+b.Stderr)
	}
	if b.Cat {
		cmd = append(cmd, "cat:/dev/stdin")
	}
	return append(cmd, fmt.Sprintf("exit:%d", b.ExitCode))
}
