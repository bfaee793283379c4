package sdk

import (
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// Handshake is what the kernel and a plugin check before talking. The
// cookie is a user-experience feature, not security: it makes a plugin
// binary started by hand say that it is a plugin, instead of hanging.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "SHOAL_PLUGIN",
	MagicCookieValue: "a5c1b5f0-shoal-plugin",
}

// MaxMessageBytes bounds one gRPC message between the kernel and its
// plugins, and between shoal's own processes. gRPC's default of 4 MiB is too
// small for a scheduler's whole view of a few thousand labelled nodes or a
// list of 10,000 tasks; 64 MiB is far above both and still bounds memory.
const MaxMessageBytes = 64 << 20

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
// go-plugin's own logs go to stderr as JSON lines, which the kernel
// re-levels into its own log; a plugin's lines do the same through Logger.
func ServePlugins(plugins plugin.PluginSet) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{ProtocolVersion: plugins},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return plugin.DefaultGRPCServer(append(opts, grpc.MaxRecvMsgSize(MaxMessageBytes), grpc.MaxSendMsgSize(MaxMessageBytes)))
		},
		Logger: hclog.New(&hclog.LoggerOptions{
			Level:      hclog.Debug,
			Output:     os.Stderr,
			JSONFormat: true,
		}),
	})
}
