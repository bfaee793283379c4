// Command executor-containerd-logdriver is the log driver of
// executor-containerd alone: the containerd shim starts one per task, as
// "executor-containerd-logdriver log-driver DIR max-size BYTES max-files N"
// (package logdriver), and it copies the task's stdout and stderr into
// their files until both end.
//
// The plugin's own binary can do this job too, but it carries the
// containerd client, gRPC and every protobuf registry: it takes about
// 7.5 ms of CPU and 1,100 page faults to start, against about 1.4 ms and
// 200 for this one, and a node starting many containers at once pays
// that once per container. executor-containerd uses this binary when it
// is installed beside it (`make build` puts both in bin/).
package main

import (
	"fmt"
	"os"

	"github.com/shoalhq/shoal/plugins/executor-containerd/logdriver"
)

func main() {
	if !logdriver.IsDriver(os.Args) {
		fmt.Fprintln(os.Stderr, "usage: executor-containerd-logdriver log-driver DIR [max-size BYTES max-files N] (started by the containerd shim for each task)")
		os.Exit(2)
	}
	logdriver.Main()
}
