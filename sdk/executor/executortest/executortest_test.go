//go:build linux

package executortest_test

import (
	"testing"

	"github.com/shoalhq/shoal/sdk/executor"
	"github.com/shoalhq/shoal/sdk/executor/executortest"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TestRun: an executor that keeps the contract passes the kit, with real
// processes running ShellTask's scripts.
func TestRun(t *testing.T) {
	state := newProcState()
	executortest.Run(t, executortest.Config{
		New:  func(*testing.T) executor.Executor { return procExec{state} },
		Task: executortest.ShellTask("unused: the command runs on the host"),
		Unpreparable: func(id string) *objectv1.Task {
			return &objectv1.Task{Id: id, Spec: &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "no-command"}}}
		},
	})
}
