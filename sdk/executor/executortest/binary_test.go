package executortest_test

import (
	"os"
	"testing"

	"github.com/shoalhq/shoal/sdk/executor/executortest"
)

// TestPluginBinary runs the kit against the executor plugin binary named by
// $SHOAL_EXECUTOR_PLUGIN, with tasks of the image $SHOAL_EXECUTOR_IMAGE (one
// with a POSIX shell): how a plugin written in another language uses the kit.
func TestPluginBinary(t *testing.T) {
	path, image := os.Getenv("SHOAL_EXECUTOR_PLUGIN"), os.Getenv("SHOAL_EXECUTOR_IMAGE")
	if path == "" || image == "" {
		t.Skip("set SHOAL_EXECUTOR_PLUGIN to an executor plugin binary and SHOAL_EXECUTOR_IMAGE to an image with a shell to check it")
	}
	executortest.RunBinary(t, path, executortest.Config{Image: image})
}
