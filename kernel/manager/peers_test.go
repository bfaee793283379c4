package manager

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSavedPeers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, peersFileName)
	if got, err := loadPeers(path); err != nil || got != nil {
		t.Fatalf("missing file: %v, %v; want an empty list", got, err)
	}
	want := []string{"10.0.0.1:4242", "10.0.0.2:4242"}
	if err := savePeers(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := loadPeers(path)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("loadPeers = %v, %v; want %v", got, err, want)
	}

	many := make([]string, maxSavedPeers+10)
	for i := range many {
		many[i] = "10.0.0.1:1"
	}
	if err := savePeers(path, many); err != nil {
		t.Fatal(err)
	}
	if got, err := loadPeers(path); err != nil || len(got) != maxSavedPeers {
		t.Fatalf("saving %d: read back %d, %v; want %d", len(many), len(got), err, maxSavedPeers)
	}

	for name, content := range map[string]string{
		"not host:port": `{"api_addrs":["10.0.0.1"]}`,
		"too large":     `{"api_addrs":["` + strings.Repeat("a", maxPeersFileBytes) + `"]}`,
		"not json":      `api_addrs`,
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := loadPeers(path); err == nil {
			t.Errorf("%s: loadPeers = %v, want an error", name, got)
		}
	}
}
