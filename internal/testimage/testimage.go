// Package testimage builds container images for tests, without a network:
// one layer around a static build of the test program (./prog, which runs
// its arguments as a script: print, sleep, exit with a code, ignore SIGTERM,
// listen, connect), written as an OCI layout or a docker archive for
// importing, or pushed to a registry over its HTTP API.
//
// The image's entrypoint is ["/prog"] and its default command
// ["out:default-cmd", "sleep:inf"]; its environment sets IMAGE_ENV=from-image;
// its working directory is /work; it has a user "app" (uid 1000, gid 1000)
// in /etc/passwd.
package testimage

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is a built test image: its blobs and their descriptors.
type Image struct {
	// Name is the image's full reference, e.g. "docker.io/shoal/prog:1".
	Name                    string
	Layer, Config, Manifest []byte
	LayerDesc, ConfigDesc   ocispec.Descriptor
	ManifestDesc            ocispec.Descriptor
}

// The program's build, shared by every image of a test binary.
var (
	buildOnce sync.Once
	buildBin  []byte
	buildErr  error
)

// program builds ./prog statically (CGO_ENABLED=0) for linux/GOARCH.
func program() ([]byte, error) {
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		dir, err := os.MkdirTemp("", "testimage-")
		if err != nil {
			buildErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "prog")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./prog")
		cmd.Dir = filepath.Dir(file)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("testimage: go build: %v\n%s", err, b)
			return
		}
		buildBin, buildErr = os.ReadFile(out)
	})
	return buildBin, buildErr
}

// New builds the test image named name (a full reference such as
// "docker.io/shoal/prog:1"; the name only labels it).
func New(name string) (*Image, error) {
	bin, err := program()
	if err != nil {
		return nil, err
	}
	return FromBinary(name, bin, ocispec.ImageConfig{
		Entrypoint: []string{"/prog"},
		Cmd:        []string{"out:default-cmd", "sleep:inf"},
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "IMAGE_ENV=from-image"},
		WorkingDir: "/work",
	})
}

// FromBinary builds an image named name of one layer around bin, a static
// linux program installed as /prog, with the test layout (/etc/passwd with
// root and app, /tmp, /work) and cfg as the image's config.
func FromBinary(name string, bin []byte, cfg ocispec.ImageConfig) (*Image, error) {
	layer, err := layerTar(bin)
	if err != nil {
		return nil, err
	}
	im := &Image{Name: name, Layer: layer}
	im.LayerDesc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(layer), Size: int64(len(layer))}
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	img := ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config:   cfg,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{im.LayerDesc.Digest}},
	}
	if im.Config, err = json.Marshal(img); err != nil {
		return nil, err
	}
	im.ConfigDesc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(im.Config), Size: int64(len(im.Config))}
	mf := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    im.ConfigDesc,
		Layers:    []ocispec.Descriptor{im.LayerDesc},
	}
	if im.Manifest, err = json.Marshal(mf); err != nil {
		return nil, err
	}
	im.ManifestDesc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(im.Manifest), Size: int64(len(im.Manifest))}
	return im, nil
}

// layerTar is the image's only layer: /prog, /etc/passwd, /etc/group, /tmp
// and /work.
func layerTar(bin []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	dirs := []struct {
		name string
		mode int64
	}{{"etc/", 0o755}, {"tmp/", 0o1777}, {"work/", 0o755}}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d.name, Mode: d.mode, ModTime: mtime}); err != nil {
			return nil, err
		}
	}
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/prog\napp:x:1000:1000:app:/work:/prog\n")},
		{"etc/group", 0o644, []byte("root:x:0:\napp:x:1000:\n")},
		{"prog", 0o755, bin},
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: mtime}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Healthcheck is a docker image config's HEALTHCHECK (its JSON has
// durations in nanoseconds, as docker writes them). The OCI image spec has
// no such field; docker's config, a superset, has.
type Healthcheck struct {
	Test        []string      `json:"Test"`
	Interval    time.Duration `json:"Interval,omitempty"`
	Timeout     time.Duration `json:"Timeout,omitempty"`
	StartPeriod time.Duration `json:"StartPeriod,omitempty"`
	Retries     int           `json:"Retries,omitempty"`
}

// WithHealthcheck returns the image with h as its config's Healthcheck.
func (im *Image) WithHealthcheck(h Healthcheck) (*Image, error) {
	var cfg map[string]any
	if err := json.Unmarshal(im.Config, &cfg); err != nil {
		return nil, err
	}
	inner, _ := cfg["config"].(map[string]any)
	if inner == nil {
		inner = map[string]any{}
	}
	inner["Healthcheck"] = h
	cfg["config"] = inner
	out := *im
	var err error
	if out.Config, err = json.Marshal(cfg); err != nil {
		return nil, err
	}
	out.ConfigDesc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(out.Config), Size: int64(len(out.Config))}
	mf := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    out.ConfigDesc,
		Layers:    []ocispec.Descriptor{out.LayerDesc},
	}
	if out.Manifest, err = json.Marshal(mf); err != nil {
		return nil, err
	}
	out.ManifestDesc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(out.Manifest), Size: int64(len(out.Manifest))}
	return &out, nil
}

// blobPath is where an OCI layout keeps a blob.
func blobPath(d ocispec.Descriptor) string {
	return "blobs/" + d.Digest.Algorithm().String() + "/" + d.Digest.Encoded()
}

// WriteOCI writes the image as an OCI image layout in a tar, the image's
// name in the index's annotations (containerd's and the OCI one).
func (im *Image) WriteOCI(w io.Writer) error {
	md := im.ManifestDesc
	md.Annotations = map[string]string{
		"io.containerd.image.name": im.Name,
		ocispec.AnnotationRefName:  tagOf(im.Name),
	}
	index, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{md}})
	if err != nil {
		return err
	}
	return writeTar(w, []tarFile{
		{ocispec.ImageLayoutFile, []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{blobPath(im.LayerDesc), im.Layer},
		{blobPath(im.ConfigDesc), im.Config},
		{blobPath(im.ManifestDesc), im.Manifest},
	})
}

// WriteDocker writes the image as a docker archive (`docker save`'s format).
func (im *Image) WriteDocker(w io.Writer) error {
	manifest, err := json.Marshal([]map[string]any{{
		"Config":   "config.json",
		"RepoTags": []string{dockerTag(im.Name)},
		"Layers":   []string{"layer.tar"},
	}})
	if err != nil {
		return err
	}
	return writeTar(w, []tarFile{
		{"manifest.json", manifest},
		{"config.json", im.Config},
		{"layer.tar", im.Layer},
	})
}

type tarFile struct {
	name string
	data []byte
}

func writeTar(w io.Writer, files []tarFile) error {
	tw := tar.NewWriter(w)
	mtime := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: mtime}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// WriteFile writes the image to path, as an OCI layout ("oci") or a docker
// archive ("docker").
func (im *Image) WriteFile(path, format string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	switch format {
	case "oci":
		err = im.WriteOCI(f)
	case "docker":
		err = im.WriteDocker(f)
	default:
		err = fmt.Errorf("testimage: format %q: want oci or docker", format)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// tagOf is the tag of a reference ("latest" when it has none).
func tagOf(ref string) string {
	i := strings.LastIndexAny(ref, ":/")
	if i < 0 || ref[i] == '/' {
		return "latest"
	}
	return ref[i+1:]
}

// dockerTag is ref as `docker save` writes it: without "docker.io/" and
// "library/".
func dockerTag(ref string) string {
	ref = strings.TrimPrefix(ref, "docker.io/")
	return strings.TrimPrefix(ref, "library/")
}

// Push uploads the image to the registry at host ("127.0.0.1:5000") over
// plain HTTP as repo:tag, through the registry's HTTP API (monolithic blob
// uploads, then the manifest).
func (im *Image) Push(ctx context.Context, host, repo, tag string) error {
	base := "http://" + host + "/v2/" + repo
	for _, b := range []struct {
		desc ocispec.Descriptor
		data []byte
	}{{im.LayerDesc, im.Layer}, {im.ConfigDesc, im.Config}} {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/blobs/uploads/", nil)
		if err != nil {
			return err
		}
		resp, err := do(req, http.StatusAccepted)
		if err != nil {
			return fmt.Errorf("push %s: start upload: %w", repo, err)
		}
		loc, err := resp.Location()
		if err != nil {
			return fmt.Errorf("push %s: upload location: %w", repo, err)
		}
		q := loc.Query()
		q.Set("digest", b.desc.Digest.String())
		loc.RawQuery = q.Encode()
		req, err = http.NewRequestWithContext(ctx, http.MethodPut, loc.String(), bytes.NewReader(b.data))
		if err != nil {
			return err
		}
		req.ContentLength = int64(len(b.data))
		req.Header.Set("Content-Type", "application/octet-stream")
		if _, err := do(req, http.StatusCreated); err != nil {
			return fmt.Errorf("push %s: blob %s: %w", repo, b.desc.Digest, err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/manifests/"+tag, bytes.NewReader(im.Manifest))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ocispec.MediaTypeImageManifest)
	if _, err := do(req, http.StatusCreated); err != nil {
		return fmt.Errorf("push %s:%s: manifest: %w", repo, tag, err)
	}
	return nil
}

func do(req *http.Request, want int) (*http.Response, error) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, body)
	}
	return resp, nil
}
