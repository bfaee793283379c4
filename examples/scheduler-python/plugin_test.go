// Package schedulerpython holds the test of plugin.py, a scheduler plugin
// in Python: the conformance kit run against it by path, as the kernel would
// start it.
package schedulerpython

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/shoalhq/shoal/sdk/scheduler/schedulertest"
)

// TestConformance runs schedulertest against plugin.py. It skips only when
// Debian's Python packages are missing; `make deps` installs them.
func TestConformance(t *testing.T) {
	schedulertest.RunBinary(t, pluginPath(t))
}

// pluginPath returns the path of plugin.py, skipping t when the Python it runs
// with (its #! line) lacks the packages it imports.
func pluginPath(t testing.TB) string {
	t.Helper()
	const python = "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import grpc, google.protobuf, cryptography").CombinedOutput(); err != nil {
		t.Skipf("%s cannot run the Python plugin (%v: %s): run scripts/deps.sh, which installs python3-grpcio, python3-protobuf and python3-cryptography", python, err, out)
	}
	path, err := filepath.Abs("plugin.py")
	if err != nil {
		t.Fatal(err)
	}
	return path
}
