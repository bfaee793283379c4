package stack

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad checks that Load returns, an error or a plan, on any compose
// file. The seeds are the test files.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/*.yml")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("services:\n  web:\n    image: web\n    ports: [\"80:8080\"]\n    volumes: [./a:/a, v:/v]\nvolumes:\n  v: {}\n"))
	f.Add([]byte("services:\n  web:\n    image: ${X:?unset}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "compose.yml")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		plan, err := Load(context.Background(), Options{Files: []string{path}, Name: "fuzz", WorkingDir: dir})
		if err == nil && plan == nil {
			t.Fatal("Load: nil plan and nil error")
		}
	})
}
