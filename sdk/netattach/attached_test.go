package netattach

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestAttachedListsRecordedTasks(t *testing.T) {
	m := &Manager{stateDir: t.TempDir()}
	if ids, err := m.Attached(); err != nil || len(ids) != 0 {
		t.Fatalf("Attached with no records = %v, %v; want none", ids, err)
	}
	dir := filepath.Join(m.stateDir, "tasks")
	if err := os.MkdirAll(filepath.Join(dir, "not-a-record"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"b.json", "a.json", "a.json.tmp"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ids, err := m.Attached()
	slices.Sort(ids)
	if err != nil || !slices.Equal(ids, []string{"a", "b"}) {
		t.Errorf("Attached = %v, %v; want [a b]", ids, err)
	}
}
