package testimage

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestNewWritesBothFormats(t *testing.T) {
	im, err := New("docker.io/shoal/prog:1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		format string
		write  func(io.Writer) error
		want   []string
	}{
		{"oci", im.WriteOCI, []string{"oci-layout", "index.json", blobPath(im.LayerDesc), blobPath(im.ConfigDesc), blobPath(im.ManifestDesc)}},
		{"docker", im.WriteDocker, []string{"manifest.json", "config.json", "layer.tar"}},
	} {
		var buf bytes.Buffer
		if err := tc.write(&buf); err != nil {
			t.Fatalf("%s: %v", tc.format, err)
		}
		got := map[string][]byte{}
		tr := tar.NewReader(&buf)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got[h.Name], _ = io.ReadAll(tr)
		}
		for _, name := range tc.want {
			if _, ok := got[name]; !ok {
				t.Errorf("%s archive lacks %s", tc.format, name)
			}
		}
		if tc.format == "oci" {
			var idx ocispec.Index
			if err := json.Unmarshal(got["index.json"], &idx); err != nil {
				t.Fatal(err)
			}
			if n := idx.Manifests[0].Annotations["io.containerd.image.name"]; n != "docker.io/shoal/prog:1" {
				t.Errorf("index names %q, want docker.io/shoal/prog:1", n)
			}
		}
	}
	// The layer holds a runnable static program.
	tr := tar.NewReader(bytes.NewReader(im.Layer))
	found := false
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Name == "prog" {
			head := make([]byte, 4)
			io.ReadFull(tr, head)
			found = string(head) == "\x7fELF"
		}
	}
	if !found {
		t.Error("layer has no ELF /prog")
	}
}

func TestPushToRegistry(t *testing.T) {
	host := Registry(t)
	im, err := New(host + "/shoal/prog:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Push(context.Background(), host, "shoal/prog", "1"); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodHead, "http://"+host+"/v2/shoal/prog/manifests/1", nil)
	req.Header.Set("Accept", ocispec.MediaTypeImageManifest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != im.ManifestDesc.Digest.String() {
		t.Errorf("HEAD manifest = %s digest %q, want 200 %s", resp.Status, resp.Header.Get("Docker-Content-Digest"), im.ManifestDesc.Digest)
	}
}

func TestTagOf(t *testing.T) {
	for in, want := range map[string]string{"a/b:1": "1", "host:5000/a/b": "latest", "host:5000/a/b:2": "2", "b": "latest"} {
		if got := tagOf(in); got != want {
			t.Errorf("tagOf(%q) = %q, want %q", in, got, want)
		}
	}
}
