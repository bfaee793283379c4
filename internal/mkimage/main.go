// Command mkimage packs a Go program into a container image tar, without a
// registry or a container engine: it builds the package statically for
// linux and wraps it as /prog in a one-layer image (see internal/testimage).
// `make build` uses it for the example service of the README:
//
//	go run ./internal/mkimage -name shoal.local/hello:1 -o bin/hello-1.tar ./examples/hello
//
// The tar is an OCI image layout (-format oci, the default) or a docker
// archive (-format docker); `shoal image import` loads either.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoalhq/shoal/internal/testimage"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	name := flag.String("name", "", "the image's reference, e.g. shoal.local/hello:1 (required)")
	out := flag.String("o", "", "the tar to write (required)")
	format := flag.String("format", "oci", `"oci" or "docker"`)
	var env listFlag
	flag.Var(&env, "env", "KEY=value in the image's environment (repeatable)")
	var health listFlag
	flag.Var(&health, "health-cmd", "a word of the image's HEALTHCHECK, in CMD form (repeatable: -health-cmd /prog -health-cmd health)")
	healthInterval := flag.Duration("health-interval", 0, "the HEALTHCHECK's interval (0: docker's default)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: mkimage -name REF -o FILE.tar [-env K=V]... PACKAGE\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *name == "" || *out == "" || flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	for _, e := range env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			fmt.Fprintf(os.Stderr, "mkimage: -env %q: want KEY=value\n", e)
			os.Exit(2)
		}
	}
	var hc *testimage.Healthcheck
	if len(health) > 0 {
		hc = &testimage.Healthcheck{Test: append([]string{"CMD"}, health...), Interval: *healthInterval}
	}
	if err := run(*name, *out, *format, env, hc, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(name, out, format string, env []string, hc *testimage.Healthcheck, pkg string) error {
	dir, err := os.MkdirTemp("", "mkimage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	binPath := filepath.Join(dir, "prog")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", binPath, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", pkg, err)
	}
	bin, err := os.ReadFile(binPath)
	if err != nil {
		return err
	}
	im, err := testimage.FromBinary(name, bin, ocispec.ImageConfig{
		Entrypoint: []string{"/prog"},
		Env:        append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, env...),
		WorkingDir: "/work",
	})
	if err != nil {
		return err
	}
	if hc != nil {
		if im, err = im.WithHealthcheck(*hc); err != nil {
			return err
		}
	}
	return im.WriteFile(out, format)
}
