// Package pluginhost launches and supervises one out-of-process plugin, the
// binary named in a node's [plugins.<kind>] table, with hashicorp/go-plugin
// over gRPC.
//
// A Host starts the plugin when Run is called and keeps it running until
// Run's context ends:
//
//   - The kernel and the plugin negotiate the protocol version
//     (sdk.ProtocolVersion, go-plugin's VersionedPlugins); gRPC is the only
//     protocol allowed, over a unix socket in the host's socket directory,
//     with mutual TLS set up per start (go-plugin's AutoMTLS).
//   - After each start the host hands the plugin its [plugins.<kind>.config]
//     table (Configure), before anyone can Get the plugin.
//   - It checks the plugin every few seconds: an exited process or a failed
//     health check is a crash. A crashed plugin is killed and started again
//     after an exponential backoff (100ms doubling to 10s; back to 100ms once
//     a start stayed up 30s).
//   - While the plugin is down, Get waits for it within the caller's
//     context, and calls through a client got before the crash fail with an
//     error of kind sdk.ErrUnavailable ("scheduler plugin restarting"). The
//     kernel's state lives in the store, not in the plugin: a crash delays
//     work, it loses nothing.
//   - Plugins die with the agent (Linux's parent-death signal), so none is
//     ever left running by a killed agent.
//
// Failures that retrying cannot fix stop Run with an error, which stops the
// manager: a plugin that cannot be started the first time (not a shoal
// plugin, an incompatible protocol version, a binary that exits at once),
// and a plugin that rejects its configuration, at any start. An operator
// must fix those; a restart loop would hide them. A plugin that answers
// Configure with an error of kind sdk.ErrUnavailable (what it needs is not
// up yet), or does not answer, is retried like a crash, on the first start
// too.
//
// The plugin's log lines (JSON from sdk.ServePlugins) are re-leveled by
// go-plugin and reach the host's slog logger, with "plugin" set to the kind.
//
// Goroutines: Run owns the plugin process and every go-plugin goroutine of
// it; all have ended when Run returns. Get and Restarts may be called from
// any goroutine.
package pluginhost
