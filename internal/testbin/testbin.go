// Package testbin builds the Go programs that a package's tests run as
// processes (a plugin, a fake executor), once for the whole test binary,
// from TestMain.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Main builds the Go main package pkg (a path such as
// "./testdata/plugin", relative to the package under test) into a
// temporary directory, hands the binary's path to use, runs m's tests and
// exits with their code, removing the directory. A failed build exits 1,
// with go build's output, without running any test. It does not return.
func Main(m *testing.M, pkg string, use func(path string)) {
	dir, err := os.MkdirTemp("", "testbin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", pkg, err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	use(bin)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
