// Command executor-containerd is the executor plugin that runs a node's
// tasks as containers through containerd (package ctrexec), with task
// networking from sdk/netattach. Each task's log driver is
// executor-containerd-logdriver beside it; without that, this binary is
// the driver when the containerd shim starts it with "log-driver DIR" and
// its rotation limits (package logdriver).
package main

import (
	"os"

	ctrdlog "github.com/containerd/log"

	"github.com/shoalhq/shoal/plugins/executor-containerd/ctrexec"
	"github.com/shoalhq/shoal/plugins/executor-containerd/logdriver"
	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
	"github.com/shoalhq/shoal/sdk/netattach"
)

func main() {
	if logdriver.IsDriver(os.Args) {
		logdriver.Main()
	}
	logger := sdk.Logger()
	// The containerd client logs through logrus on stderr; its info lines
	// (every failed registry request) would drown the plugin's own.
	_ = ctrdlog.SetLevel("warn")
	executor.Serve(ctrexec.New(ctrexec.Options{
		Logger: logger,
		NewNetwork: func(stateDir string) (ctrexec.Network, error) {
			return netattach.New(netattach.Config{StateDir: stateDir, Logger: logger.With("part", "tasknet")})
		},
	}))
}
