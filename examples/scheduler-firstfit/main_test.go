package main

import (
	"testing"

	"github.com/shoalhq/shoal/sdk/plugintest"
	"github.com/shoalhq/shoal/sdk/scheduler"
	"github.com/shoalhq/shoal/sdk/scheduler/schedulertest"
)

func TestConformance(t *testing.T) {
	schedulertest.Run(t, func() scheduler.Scheduler { return &firstFit{} })
}

// TestBinary runs the kit against this plugin built, started as the kernel
// starts it.
func TestBinary(t *testing.T) {
	schedulertest.RunBinary(t, plugintest.Build(t, "."))
}
