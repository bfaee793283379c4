package ipamtest_test

import (
	"os"
	"testing"

	"github.com/shoalhq/shoal/sdk/ipam/ipamtest"
)

// pluginEnv names an IPAM plugin binary TestPluginBinary runs the kit
// against: how a plugin written in another language uses the kit.
const pluginEnv = "SHOAL_IPAM_PLUGIN"

// TestPluginBinary runs the kit against the plugin binary named by
// $SHOAL_IPAM_PLUGIN. The bundled plugin's own test calls RunBinary.
func TestPluginBinary(t *testing.T) {
	path := os.Getenv(pluginEnv)
	if path == "" {
		t.Skip("set " + pluginEnv + " to an IPAM plugin binary to check it")
	}
	ipamtest.RunBinary(t, path)
}
