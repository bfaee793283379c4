package main

import (
	"errors"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/shoalhq/shoal/kernel/config"
	"github.com/shoalhq/shoal/kernel/node"
)

// newAgentCmd runs the node daemon: `shoal agent --config node.toml`.
func newAgentCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node daemon (a manager or a worker, as the config says)",
		Long: `Run the node daemon. With no [join] addresses in the config, the first start
creates a new cluster (root CA, join tokens) with this node as its only manager;
with [join] addrs and a manager token, it joins an existing cluster. A node
with role = "worker" joins with the worker token and runs tasks.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			logger := slog.New(cfg.Log.Handler(os.Stderr))
			if err := node.Run(cmd.Context(), cfg, logger); err != nil && !errors.Is(err, cmd.Context().Err()) {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "/etc/shoal/node.toml", "the node's TOML config")
	return cmd
}
