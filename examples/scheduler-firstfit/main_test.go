package main

import (
	"testing"

	"github.com/shoalhq/shoal/sdk/scheduler"
	"github.com/shoalhq/shoal/sdk/scheduler/schedulertest"
)

func TestConformance(t *testing.T) {
	schedulertest.Run(t, func() scheduler.Scheduler { return &firstFit{} })
}
