package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
)

// The other managers' API addresses, saved in the data directory whenever
// the replica's list changes. A manager restarted after it was removed from
// the Raft group (demoted while it was down) has only its last snapshot in
// its replica, which may name no other manager; this list is how it finds
// one to ask to be re-added. It is a hint: every address is dialled over
// mutual TLS and only a manager of this cluster answers.

const (
	peersFileName = "managers.json"
	// maxSavedPeers bounds the list: far more managers than any cluster
	// runs (Raft groups stay small).
	maxSavedPeers = 64
	// maxPeersFileBytes bounds what is read back.
	maxPeersFileBytes = 64 << 10
)

type savedPeers struct {
	APIAddrs []string `json:"api_addrs"`
}

// peersLoop saves the list whenever a change to a manager's record is
// applied, so that it is current within moments of a manager joining.
func (m *Manager) peersLoop(ctx context.Context) error {
	saved, _ := loadPeers(m.peersFile())
	save := func() {
		peers := m.peerAPIAddrs()
		if len(peers) == 0 || slices.Equal(peers, saved) {
			return
		}
		if err := savePeers(m.peersFile(), peers); err != nil {
			m.log.Warn("saving the manager list", "error", err)
			return
		}
		saved = peers
	}
	for {
		events, cancel := m.st.Watch()
		save()
		for open := true; open; {
			select {
			case <-ctx.Done():
				cancel()
				return nil
			case ev, ok := <-events:
				if !ok {
					// Fell behind or the state was restored: look again.
					open = false
				} else if ev.Node.GetManagerStatus() != nil || ev.OldNode.GetManagerStatus() != nil {
					save()
				}
			}
		}
		cancel()
	}
}

func (m *Manager) peersFile() string { return filepath.Join(m.cfg.Node.DataDir, peersFileName) }

// savePeers writes addrs (at most maxSavedPeers) to path atomically.
func savePeers(path string, addrs []string) error {
	if len(addrs) > maxSavedPeers {
		addrs = addrs[:maxSavedPeers]
	}
	b, err := json.Marshal(savedPeers{APIAddrs: addrs})
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// loadPeers reads the saved list. A missing file is an empty list; a file
// that is too large or holds something other than host:port addresses is
// an error naming the limit or the entry.
func loadPeers(path string) ([]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPeersFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPeersFileBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxPeersFileBytes)
	}
	var p savedPeers
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(p.APIAddrs) > maxSavedPeers {
		return nil, fmt.Errorf("%s: api_addrs: %d entries, limit %d", path, len(p.APIAddrs), maxSavedPeers)
	}
	for i, a := range p.APIAddrs {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("%s: api_addrs[%d]: must be host:port, got %q", path, i, a)
		}
	}
	return p.APIAddrs, nil
}
