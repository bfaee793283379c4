package schedulertest_test

import (
	"testing"

	"github.com/shoalhq/shoal/sdk/scheduler"
	"github.com/shoalhq/shoal/sdk/scheduler/schedulertest"
)

// A scheduler plugin's whole conformance test is one call to Run, in a
// _test.go file of the plugin. newFirstFit (firstfit_test.go) is a complete
// scheduler that passes; TestRun runs this very test.
func ExampleRun() {
	conformance := func(t *testing.T) {
		schedulertest.Run(t, func() scheduler.Scheduler { return newFirstFit() })
	}
	// In the plugin's package: func TestConformance(t *testing.T) { ... }
	_ = conformance
}
