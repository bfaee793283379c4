package raftstore

import (
	"testing"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

func openWAL(t *testing.T, dir string, filer bool) (*wal.WAL, *metadb.BoltMetaDB) {
	t.Helper()
	meta := &metadb.BoltMetaDB{}
	var (
		w   *wal.WAL
		err error
	)
	if filer {
		w, err = wal.Open(dir, wal.WithMetaStore(meta), wal.WithSegmentFiler(newTruncatedTailFiler(dir)))
	} else {
		w, err = wal.Open(dir, wal.WithMetaStore(meta))
	}
	if err != nil {
		meta.Close()
		t.Fatal(err)
	}
	return w, meta
}

// TestTruncatedTailReopens reproduces raft-wal issue #31 — a follower
// drops its uncommitted tail, the process restarts — and checks that the
// log reads back whole through truncatedTailFiler.
func TestTruncatedTailReopens(t *testing.T) {
	dir := t.TempDir()
	w, meta := openWAL(t, dir, true)
	var logs []*raft.Log
	for i := uint64(1); i <= 10; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte{byte(i)}})
	}
	if err := w.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	// A new leader overrules entries 9 and 10.
	if err := w.DeleteRange(9, 10); err != nil {
		t.Fatal(err)
	}
	if err := w.StoreLogs([]*raft.Log{{Index: 9, Term: 2, Type: raft.LogCommand, Data: []byte{90}}}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	meta.Close()

	w, meta = openWAL(t, dir, true)
	defer meta.Close()
	defer w.Close()
	for i := uint64(1); i <= 9; i++ {
		var l raft.Log
		if err := w.GetLog(i, &l); err != nil {
			t.Fatalf("GetLog(%d) after reopening = %v", i, err)
		}
		want := byte(i)
		if i == 9 {
			want = 90
		}
		if l.Data[0] != want || (i == 9 && l.Term != 2) {
			t.Errorf("GetLog(%d) = data %v term %d, want %d", i, l.Data, l.Term, want)
		}
	}
	if last, _ := w.LastIndex(); last != 9 {
		t.Errorf("LastIndex = %d, want 9", last)
	}
}
