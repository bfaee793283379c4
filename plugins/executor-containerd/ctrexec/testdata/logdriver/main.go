// Command logdriver is the log driver alone, for the tests: a small binary
// built without the race detector starts in milliseconds, where the test
// binary (the plugin's stand-in) takes about a second under -race, for
// every container.
package main

import (
	"fmt"
	"os"

	"github.com/shoalhq/shoal/plugins/executor-containerd/logdriver"
)

func main() {
	if !logdriver.IsDriver(os.Args) {
		fmt.Fprintln(os.Stderr, "usage: logdriver log-driver DIR [max-size BYTES max-files N] (started by the containerd shim)")
		os.Exit(2)
	}
	logdriver.Main()
}
