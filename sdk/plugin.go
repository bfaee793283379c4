package sdk

import (
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// Handshake is what the kernel and a plugin check before talking. The
// cookie is a user-experience feature, not security: it makes a plugin
// binary started by hand say that it is a plugin, instead of hanging.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "SHOAL_PLUGIN",
	MagicCookieValue: "a5c1b5f0-shoal-plugin",
}

// ProtocolVersion is the plugin protocol version this SDK speaks. The kernel
// and a plugin negotiate the highest version both know (go-plugin's
// VersionedPlugins); a kind's gRPC service keeps its package version (v1)
// for as long as this is 1.
const ProtocolVersion = 1

// Plugin kinds, as named in [plugins.<kind>] and in go-plugin's plugin sets.
const (
	KindScheduler = "scheduler"
	KindIPAM      = "ipam"
	KindExecutor  = "executor"
)

// ServePlugins runs a plugin process serving plugins until the kernel stops
// it. Plugin authors call a kind's Serve (scheduler.Serve), not this.
// Logs go to stderr as JSON lines, which the kernel re-levels into its own
// log.
func ServePlugins(plugins plugin.PluginSet) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{ProtocolVersion: plugins},
		GRPCServer:       plugin.DefaultGRPCServer,
		Logger: hclog.New(&hclog.LoggerOptions{
			Level:      hclog.Debug,
			Output:     os.Stderr,
			JSONFormat: true,
		}),
	})
}
