package raftstore

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/shoalhq/shoal/kernel/hclogslog"
)

// openLog opens (creating them if missing) the WAL and the snapshot store
// under cfg.Dir. The caller closes the WAL, then the meta database.
func openLog(cfg Config) (*wal.WAL, *metadb.BoltMetaDB, *raft.FileSnapshotStore, error) {
	walDir := filepath.Join(cfg.Dir, "wal")
	snapDir := filepath.Join(cfg.Dir, "snapshots")
	// raft-wal's Open does not create its directory.
	for _, d := range []string{walDir, snapDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, nil, nil, fmt.Errorf("raftstore: %w", err)
		}
	}
	// raft-wal v0.4.0's Close leaves the meta database it opened itself
	// open, so reopening the directory in one process would hang: own the
	// meta store and close it ourselves.
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(walDir, wal.WithMetaStore(meta), wal.WithSegmentFiler(newTruncatedTailFiler(walDir)), wal.WithLogger(hclogslog.New(cfg.Logger, "raft-wal")))
	if err != nil {
		meta.Close()
		return nil, nil, nil, fmt.Errorf("raftstore: open wal: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(snapDir, 2, hclogslog.New(cfg.Logger, "raft-snapshots"))
	if err != nil {
		w.Close()
		meta.Close()
		return nil, nil, nil, fmt.Errorf("raftstore: snapshot store: %w", err)
	}
	return w, meta, snaps, nil
}
