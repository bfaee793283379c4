package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/shoalhq/shoal/internal/testimage"
	"github.com/shoalhq/shoal/kernel/containerd"
)

func TestResolveImageTarget(t *testing.T) {
	dir := t.TempDir()
	withExec := filepath.Join(dir, "exec.toml")
	os.WriteFile(withExec, []byte(`version = 1
[node]
data_dir = "/srv/shoal"
[plugins.executor.config]
namespace = "prod"
snapshotter = "native"
insecure_registries = ["reg:5000"]
`), 0o600)
	withSocket := filepath.Join(dir, "socket.toml")
	os.WriteFile(withSocket, []byte(`version = 1
[plugins.executor.config]
containerd_address = "/run/containerd/containerd.sock"
`), 0o600)
	withNodeSocket := filepath.Join(dir, "node-socket.toml")
	os.WriteFile(withNodeSocket, []byte(`version = 1
[containerd]
address = "/run/other/containerd.sock"
`), 0o600)
	missing := filepath.Join(dir, "missing.toml")
	for _, tc := range []struct {
		name   string
		path   string
		named  bool
		flags  imageTarget
		want   imageTarget
		errHas string
	}{
		{"no config: the defaults", missing, false, imageTarget{},
			imageTarget{"/var/lib/shoal/containerd/containerd.sock", "shoal", "overlayfs"}, ""},
		{"the executor's settings", withExec, true, imageTarget{},
			imageTarget{"/srv/shoal/containerd/containerd.sock", "prod", "native"}, ""},
		{"the executor's containerd", withSocket, true, imageTarget{},
			imageTarget{"/run/containerd/containerd.sock", "shoal", "overlayfs"}, ""},
		{"the node's containerd", withNodeSocket, true, imageTarget{},
			imageTarget{"/run/other/containerd.sock", "shoal", "overlayfs"}, ""},
		{"flags win", withExec, true, imageTarget{"/x.sock", "ns", "zfs"},
			imageTarget{"/x.sock", "ns", "zfs"}, ""},
		{"a named config must exist", missing, true, imageTarget{}, imageTarget{}, "--config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveImageTarget(tc.path, tc.named, tc.flags)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("resolveImageTarget = %+v, %v; want an error with %q", got, err, tc.errHas)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("resolveImageTarget = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestImageImport(t *testing.T) {
	if _, err := os.Stat(containerd.DefaultBinary); err != nil {
		t.Skipf("containerd is not installed (%v): run scripts/deps.sh", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("containerd needs root")
	}
	dir, err := os.MkdirTemp("", "shoal-image-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// The CLI finds the containerd the agent embeds from the node's config.
	nodeConfig := filepath.Join(dir, "node.toml")
	os.WriteFile(nodeConfig, []byte("version = 1\n[node]\ndata_dir = \""+dir+"\"\n[plugins.executor.config]\nnamespace = \"clitest\"\n"), 0o600)
	sup, err := containerd.New(containerd.Config{Dir: containerd.NodeDir(dir)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sup.Run(runCtx) }()
	defer func() { stop(); <-done }()
	if err := sup.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(sup.Address())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	for _, format := range []string{"oci", "docker"} {
		name := "docker.io/shoaltest/" + format + ":1"
		im, err := testimage.New(name)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, format+".tar")
		if err := im.WriteFile(file, format); err != nil {
			t.Fatal(err)
		}
		res := runCLI("unix:///nonexistent", "image", "import", "--config", nodeConfig, file)
		if res.code != 0 || res.stdout != "Loaded image: "+name+"\n" {
			t.Errorf("%s: image import = %d, %q, %q; want Loaded image: %s", format, res.code, res.stdout, res.stderr, name)
			continue
		}
		img, err := c.GetImage(namespaces.WithNamespace(ctx, "clitest"), name)
		if err != nil {
			t.Errorf("%s: GetImage(%s) = %v", format, name, err)
			continue
		}
		if ok, err := img.IsUnpacked(namespaces.WithNamespace(ctx, "clitest"), "overlayfs"); !ok || err != nil {
			t.Errorf("%s: IsUnpacked = %v, %v; want unpacked for the executor", format, ok, err)
		}
	}
	res := runCLI("unix:///nonexistent", "image", "import", "--config", nodeConfig, "--format", "json", filepath.Join(dir, "oci.tar"))
	if want := "[\n  {\n    \"name\": \"docker.io/shoaltest/oci:1\"\n  }\n]\n"; res.code != 0 || res.stdout != want {
		t.Errorf("image import --format json = %d, %q, %q; want %q", res.code, res.stdout, res.stderr, want)
	}
	res = runCLI("unix:///nonexistent", "image", "import", "--containerd-address", sup.Address(), filepath.Join(dir, "missing.tar"))
	if res.code == 0 || !strings.Contains(res.stderr, "missing.tar") {
		t.Errorf("import of a missing file = %d, %q; want an error naming it", res.code, res.stderr)
	}
}
