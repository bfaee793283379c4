package sdk

import (
	"os/exec"
	"strings"
	"testing"
)

// TestSDKImportsNoKernel keeps sdk/ free of the kernel, the plugins and cmd,
// so that it can become its own module.
func TestSDKImportsNoKernel(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/shoalhq/shoal/sdk/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"/kernel", "/plugins", "/cmd"} {
			if strings.HasPrefix(dep, "github.com/shoalhq/shoal"+banned) {
				t.Errorf("sdk depends on %s", dep)
			}
		}
	}
}
