package main

import (
	"errors"
	"log/slog"
	"time"

	"github.com/spf13/pflag"

	"github.com/shoalhq/shoal/kernel/config"
	"github.com/shoalhq/shoal/kernel/manager"
)

// recoveryFlags are the agent's disaster-recovery flags: how a manager
// starts a one-manager cluster from a backup or from its own data
// directory after its peers are lost.
type recoveryFlags struct {
	restore    string
	secretsKey string
	forceNew   bool
}

func (r *recoveryFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&r.restore, "restore", "", "start a one-manager cluster from the backup `FILE` (shoal cluster backup); node.data_dir must be empty")
	fs.StringVar(&r.secretsKey, "secrets-key", "", "with --restore: the cluster's secrets key `FILE` (a copy of a manager's data_dir/secrets.key)")
	fs.BoolVar(&r.forceNew, "force-new-cluster", false, "keep this manager's data directory and state, but make it the only manager (its peers are lost for good)")
}

// prepare readies the data directory before the node starts, when a flag
// asks for it.
func (r *recoveryFlags) prepare(cfg config.Config, logger *slog.Logger) error {
	switch {
	case r.restore != "" && r.forceNew:
		return errors.New("--restore and --force-new-cluster: give one")
	case r.secretsKey != "" && r.restore == "":
		return errors.New("--secrets-key goes with --restore")
	case r.restore != "":
		out, err := manager.Restore(cfg, r.restore, r.secretsKey, time.Now(), logger)
		if err != nil {
			return err
		}
		logger.Info("restored the cluster state from a backup; starting as its only manager",
			"file", r.restore, "cluster_id", out.ClusterID, "raft_index", out.RaftIndex, "node_id", out.NodeID,
			"kept_node_id", out.KeptNodeID, "demoted_managers", out.Demoted, "secrets_key_id", out.SecretsKeyID)
	case r.forceNew:
		demoted, err := manager.ForceNewCluster(cfg, logger)
		if err != nil {
			return err
		}
		logger.Info("forced a new cluster: this manager is now the only one", "demoted_managers", demoted)
	}
	return nil
}
