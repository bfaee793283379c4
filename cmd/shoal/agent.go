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
	var (
		path     string
		recovery recoveryFlags
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node daemon (a manager or a worker, as the config says)",
		Long: `Run the node daemon. With no [join] addresses in the config, the first start
creates a new cluster (root CA, join tokens) with this node as its only manager;
with [join] addrs and a manager token, it joins an existing cluster. A node
with role = "worker" joins with the worker token and runs tasks.

Disaster recovery: --restore FILE starts a one-manager cluster from a backup
(shoal cluster backup) on a node with an empty data directory;
--force-new-cluster makes a surviving manager whose peers are lost for good
the only manager, keeping its state. Start without them afterwards.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			logger := slog.New(cfg.Log.Handler(os.Stderr))
			if err := recovery.prepare(cfg, logger); err != nil {
				return err
			}
			if err := node.Run(cmd.Context(), cfg, logger); err != nil && !errors.Is(err, cmd.Context().Err()) {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "/etc/shoal/node.toml", "the node's TOML config")
	recovery.add(cmd.Flags())
	return cmd
}
