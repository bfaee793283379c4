package main

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoalhq/shoal/internal/testimage"
)

// TestPacksTheExample packs examples/hello as make images does and checks
// the tar is an OCI layout naming the image, with the environment given.
func TestPacksTheExample(t *testing.T) {
	out := filepath.Join(t.TempDir(), "hello.tar")
	if err := run("shoal.local/hello:1", out, "oci", []string{"HELLO_VERSION=1"}, nil, "../../examples/hello"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	var index struct {
		Manifests []struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if len(index.Manifests) != 1 || index.Manifests[0].Annotations["io.containerd.image.name"] != "shoal.local/hello:1" {
		t.Errorf("index = %+v, want one manifest named shoal.local/hello:1", index)
	}
	found := false
	for name, b := range files {
		if strings.HasPrefix(name, "blobs/") && strings.Contains(string(b), `"HELLO_VERSION=1"`) {
			found = true
		}
	}
	if !found {
		t.Error("no image config with HELLO_VERSION=1 in the tar")
	}
}

// TestPacksAHealthcheck: -health-cmd gives the image docker's Healthcheck in
// its config, which the executor reads as the image's HEALTHCHECK.
func TestPacksAHealthcheck(t *testing.T) {
	out := filepath.Join(t.TempDir(), "hello.tar")
	hc := &testimage.Healthcheck{Test: []string{"CMD", "/prog", "health"}, Interval: 2 * time.Second}
	if err := run("shoal.local/hello:health", out, "docker", nil, hc, "../../examples/hello"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no config.json in the docker archive: %v", err)
		}
		if h.Name != "config.json" {
			continue
		}
		var cfg struct {
			Config struct {
				Healthcheck testimage.Healthcheck
			} `json:"config"`
		}
		if err := json.NewDecoder(tr).Decode(&cfg); err != nil {
			t.Fatal(err)
		}
		if got := cfg.Config.Healthcheck; strings.Join(got.Test, " ") != "CMD /prog health" || got.Interval != 2*time.Second {
			t.Errorf("Healthcheck = %+v, want %+v", got, *hc)
		}
		return
	}
}
