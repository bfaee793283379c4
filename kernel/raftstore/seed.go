package raftstore

import (
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/hclogslog"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// Seed fills an empty Raft directory (cfg.Dir) with snap as a Raft
// snapshot whose configuration holds this node alone (cfg.NodeID at
// cfg.AdvertiseAddr), at snap's index and the given term. New then starts
// from it as a one-voter group, which elects this node: the restore of a
// backup. Seed refuses a directory that holds Raft state already.
func Seed(cfg Config, snap *raftv1.Snapshot, term uint64) error {
	cfg.defaults()
	if cfg.NodeID == "" || cfg.AdvertiseAddr == "" {
		return fmt.Errorf("raftstore: seed: NodeID and AdvertiseAddr are required: %w", sdk.ErrInvalidArgument)
	}
	if term == 0 {
		term = 1
	}
	w, meta, snaps, err := openLog(cfg)
	if err != nil {
		return err
	}
	defer func() {
		w.Close()
		meta.Close()
	}()
	has, err := raft.HasExistingState(w, w, snaps)
	if err != nil {
		return fmt.Errorf("raftstore: seed: %w", err)
	}
	if has {
		return fmt.Errorf("raftstore: seed %s: %w: %w", cfg.Dir, errHasState, sdk.ErrFailedPrecondition)
	}
	snap = proto.CloneOf(snap)
	snap.Version = snapshotVersion
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(snap)
	if err != nil {
		return fmt.Errorf("raftstore: seed: %w", err)
	}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(cfg.AdvertiseAddr))
	defer trans.Close()
	conf := soleVoter(cfg)
	sink, err := snaps.Create(raft.SnapshotVersionMax, snap.GetIndex(), term, conf, snap.GetIndex(), trans)
	if err != nil {
		return fmt.Errorf("raftstore: seed: %w", err)
	}
	if _, err := sink.Write(data); err != nil {
		sink.Cancel()
		return fmt.Errorf("raftstore: seed: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("raftstore: seed: %w", err)
	}
	// A term below the snapshot's would make this node's first election
	// produce entries of a lower term than the ones before them.
	if err := w.SetUint64([]byte("CurrentTerm"), term); err != nil {
		return fmt.Errorf("raftstore: seed: %w", err)
	}
	return nil
}

// ForceNewCluster rewrites the Raft state in cfg.Dir so that its
// configuration holds this node alone (cfg.NodeID at cfg.AdvertiseAddr),
// keeping the state: it replays the log onto the latest snapshot, writes
// the result as a new snapshot with the new configuration and empties the
// log (hashicorp/raft's RecoverCluster). edit, if not nil, changes the
// state first (the other managers are gone: they must be demoted). New
// then starts a one-voter group that this node leads.
func ForceNewCluster(cfg Config, edit func(*raftv1.Snapshot)) error {
	cfg.defaults()
	if cfg.NodeID == "" || cfg.AdvertiseAddr == "" {
		return fmt.Errorf("raftstore: force new cluster: NodeID and AdvertiseAddr are required: %w", sdk.ErrInvalidArgument)
	}
	w, meta, snaps, err := openLog(cfg)
	if err != nil {
		return err
	}
	defer func() {
		w.Close()
		meta.Close()
	}()
	has, err := raft.HasExistingState(w, w, snaps)
	if err != nil {
		return fmt.Errorf("raftstore: force new cluster: %w", err)
	}
	if !has {
		return fmt.Errorf("raftstore: force new cluster: %s holds no raft state to keep: %w", cfg.Dir, sdk.ErrFailedPrecondition)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hclogslog.New(cfg.Logger, "raft")
	_, trans := raft.NewInmemTransport(raft.ServerAddress(cfg.AdvertiseAddr))
	defer trans.Close()
	f := &editFSM{fsm: fsm{st: state.New()}, edit: edit}
	if err := raft.RecoverCluster(rc, f, w, w, snaps, trans, soleVoter(cfg)); err != nil {
		return fmt.Errorf("raftstore: force new cluster: %w", err)
	}
	return nil
}

func soleVoter(cfg Config) raft.Configuration {
	return raft.Configuration{Servers: []raft.Server{{
		ID: raft.ServerID(cfg.NodeID), Address: raft.ServerAddress(cfg.AdvertiseAddr), Suffrage: raft.Voter,
	}}}
}

// editFSM is the FSM that ForceNewCluster replays the log into: its
// snapshot is the state changed by edit.
type editFSM struct {
	fsm
	edit func(*raftv1.Snapshot)
}

func (f *editFSM) Snapshot() (raft.FSMSnapshot, error) {
	snap := f.st.Snapshot()
	if f.edit != nil {
		f.edit(snap)
	}
	return &fsmSnapshot{snap: snap}, nil
}

func (f *editFSM) Restore(rc io.ReadCloser) error { return f.fsm.Restore(rc) }
