package ctrexec

import (
	"fmt"
	"testing"

	"github.com/shoalhq/shoal/sdk/executor"
	"github.com/shoalhq/shoal/sdk/executor/executortest"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TestConformance runs the SDK's conformance kit against a real
// containerd.
func TestConformance(t *testing.T) {
	address := startContainerd(t)
	executortest.Run(t, executortest.Config{
		New: func(t *testing.T) executor.Executor {
			e := New(Options{LogDriver: env.driver})
			t.Cleanup(func() { e.Close() })
			return e
		},
		Task:  progTask,
		Exec:  progExec,
		Files: true,
		// An image of a registry that does not exist: 127.0.0.1:1 refuses
		// connections at once.
		Unpreparable: func(id string) *objectv1.Task {
			return &objectv1.Task{Id: id, Spec: &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "127.0.0.1:1/shoal/absent:1"}}}
		},
		Node:         executor.NodeInfo{NodeID: "executortest", StateDir: t.TempDir(), ContainerdAddress: address},
		PluginConfig: []byte(`namespace = "` + testNamespace + `"`),
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
