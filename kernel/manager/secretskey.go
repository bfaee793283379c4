package manager

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/shoalhq/shoal/kernel/config"
	"github.com/shoalhq/shoal/kernel/secrets"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
)

// secretsKeyFile is where a manager keeps the cluster's secrets key:
// outside the raft directory, so a copy of the Raft log or snapshots
// (a backup) holds sealed secrets without the key that opens them. See
// kernel/secrets for the whole hierarchy.
func secretsKeyFile(cfg config.Config) string {
	return filepath.Join(cfg.Node.DataDir, "secrets.key")
}

// loadSecretsKey installs the key file's key, if there is one. The manager
// that bootstraps a cluster makes the key; the others get it in their Join
// answer (adoptSecretsKey).
func (m *Manager) loadSecretsKey(bootstrap bool) error {
	key, err := secrets.Load(secretsKeyFile(m.cfg))
	if errors.Is(err, sdk.ErrNotFound) {
		if !bootstrap {
			return nil
		}
		if key, err = secrets.Generate(); err != nil {
			return err
		}
		if err := secrets.Save(secretsKeyFile(m.cfg), key); err != nil {
			return fmt.Errorf("secrets key: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("secrets key: %w", err)
	}
	k, err := secrets.New(key)
	if err != nil {
		return err
	}
	m.secrets.Set(k)
	return nil
}

// adoptSecretsKey saves and installs the key a Join answer carried, when
// this manager holds none. A manager that holds another key keeps its own
// and says so: the secrets it sealed open only with it.
func (m *Manager) adoptSecretsKey(key []byte) {
	if len(key) == 0 {
		return
	}
	k, err := secrets.New(key)
	if err != nil {
		m.log.Warn("the leader sent an unusable secrets key", "error", err)
		return
	}
	if held := m.secrets.Get(); held != nil {
		if held.ID() != k.ID() {
			m.log.Error("this manager holds another secrets key than the leader's", "held", held.ID(), "leader", k.ID())
		}
		return
	}
	if err := secrets.Save(secretsKeyFile(m.cfg), key); err != nil {
		m.log.Error("saving the secrets key", "error", err)
		return
	}
	m.secrets.Set(k)
	m.log.Info("got the cluster's secrets key", "key_id", k.ID())
}

// leaderSecretsKey returns the key a leader hands to joining managers. A
// leader without one (a cluster from before secrets existed) makes one,
// but only while no secret is stored: secrets sealed with a key it does
// not hold must not be orphaned by a second key.
func leaderSecretsKey(h *secrets.Holder, st *state.Store, save func([]byte) error) (*secrets.Keyring, error) {
	if k := h.Get(); k != nil {
		return k, nil
	}
	var n int
	st.View(func(tx *state.ReadTx) { n = len(tx.Secrets()) })
	if n > 0 {
		return nil, fmt.Errorf("the leader holds no secrets key but %d secrets are sealed with one: restore data_dir/secrets.key from another manager: %w", n, sdk.ErrFailedPrecondition)
	}
	key, err := secrets.Generate()
	if err != nil {
		return nil, err
	}
	if err := save(key); err != nil {
		return nil, err
	}
	k, err := secrets.New(key)
	if err != nil {
		return nil, err
	}
	h.Set(k)
	return h.Get(), nil
}
