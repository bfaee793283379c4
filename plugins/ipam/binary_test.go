package main

import (
	"testing"

	"github.com/shoalhq/shoal/sdk/ipam/ipamtest"
	"github.com/shoalhq/shoal/sdk/plugintest"
)

// TestBinary runs the kit against the plugin built, started as the kernel
// starts it: main, the handshake and the health service are checked too.
func TestBinary(t *testing.T) {
	ipamtest.RunBinary(t, plugintest.Build(t, "."))
}
