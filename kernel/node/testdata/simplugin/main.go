// Command simplugin serves kernel/simexec as an executor plugin, for
// kernel/node's tests: the real plugin path (pluginhost, go-plugin, gRPC)
// with simulated tasks. Its Configure requires the node's ID and state
// directory, and writes the node ID to configured in the state directory,
// so that a test sees what the plugin was told.
package main

import (
	"context"
	"os"
	"path/filepath"

	"github.com/shoalhq/shoal/kernel/simexec"
	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
)

type plugin struct{ *simexec.Executor }

func (p plugin) Configure(_ context.Context, node executor.NodeInfo, config []byte) error {
	var fe sdk.FieldErrors
	if node.NodeID == "" {
		fe.Add("node.node_id", "is required")
	}
	if node.StateDir == "" {
		fe.Add("node.state_dir", "is required")
	}
	if err := fe.Err(); err != nil {
		return err
	}
	var c struct{}
	if err := sdk.DecodeConfig(config, &c); err != nil {
		return err
	}
	if err := os.MkdirAll(node.StateDir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(node.StateDir, "configured"), []byte(node.NodeID), 0o600)
}

func main() { executor.Serve(plugin{simexec.New(simexec.Config{})}) }
