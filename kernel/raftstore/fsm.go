package raftstore

import (
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/state"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// fsm applies committed entries to the state store. hashicorp/raft calls
// Apply, ApplyBatch, Snapshot and Restore from one goroutine, never
// concurrently with each other; Persist runs concurrently with later applies,
// which is safe because stored objects are immutable.
type fsm struct {
	st *state.Store
}

var (
	_ raft.FSM         = (*fsm)(nil)
	_ raft.BatchingFSM = (*fsm)(nil)
)

// applyResult is what a proposer's future returns: one error per transaction
// of the command, or err for the whole entry.
type applyResult struct {
	errs []error
	err  error
}

func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return applyResult{}
	}
	var cmd raftv1.Command
	if err := proto.Unmarshal(l.Data, &cmd); err != nil {
		// An entry no replica can decode: every replica skips it the same way.
		return applyResult{err: fmt.Errorf("decode raft entry %d: %w", l.Index, err)}
	}
	return applyResult{errs: f.st.Apply(l.Index, &cmd)}
}

func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	for i, l := range logs {
		out[i] = f.Apply(l)
	}
	return out
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{snap: f.st.Snapshot()}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	var snap raftv1.Snapshot
	if err := proto.Unmarshal(data, &snap); err != nil {
		return fmt.Errorf("restore snapshot: decode: %w", err)
	}
	if snap.Version != snapshotVersion {
		return fmt.Errorf("restore snapshot: unknown format version %d", snap.Version)
	}
	return f.st.Restore(&snap)
}

// snapshotVersion is the raftv1.Snapshot format this code writes and reads.
const snapshotVersion = 1

type fsmSnapshot struct {
	snap *raftv1.Snapshot
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	s.snap.Version = snapshotVersion
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(s.snap)
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	if _, err := sink.Write(data); err != nil {
		sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
