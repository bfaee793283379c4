package main

import (
	"testing"

	"github.com/shoalhq/shoal/sdk/plugintest"
	"github.com/shoalhq/shoal/sdk/scheduler/schedulertest"
)

// TestBinary runs the kit against the plugin built, started as the kernel
// starts it: what the in-process kit cannot see (main, the handshake, the
// health service) is checked too.
func TestBinary(t *testing.T) {
	schedulertest.RunBinary(t, plugintest.Build(t, "."))
}
