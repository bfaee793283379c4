//go:build linux

package executortest_test

import (
	"testing"

	"github.com/shoalhq/shoal/sdk/executor"
	"github.com/shoalhq/shoal/sdk/executor/executortest"
)

// An executor plugin's whole conformance test is one call to Run, in a
// _test.go file of the plugin. procExec (procexec_test.go) is a complete
// executor that runs tasks as host processes; TestRun runs this very test.
func ExampleRun() {
	conformance := func(t *testing.T) {
		state := newProcState() // what a restarted executor finds again
		executortest.Run(t, executortest.Config{
			New:  func(*testing.T) executor.Executor { return procExec{state} },
			Task: executortest.ShellTask("docker.io/library/busybox:1.36"),
		})
	}
	// In the plugin's package: func TestConformance(t *testing.T) { ... }
	_ = conformance
}
