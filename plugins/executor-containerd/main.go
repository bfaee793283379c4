// Command executor-containerd is the executor plugin that runs a node's
// tasks as containers through containerd (package ctrexec), with task
// networking from kernel/tasknet. Each task's log driver is
// executor-containerd-logdriver beside it; without that, this binary is
// the driver when the containerd shim starts it with "log-driver DIR" and
// its rotation limits (package logdriver).
package main

import (
	"log/slog"
	"os"

	ctrdlog "github.com/containerd/log"

	"github.com/shoalhq/shoal/kernel/tasknet"
	"github.com/shoalhq/shoal/plugins/executor-containerd/ctrexec"
	"github.com/shoalhq/shoal/plugins/executor-containerd/logdriver"
	"github.com/shoalhq/shoal/sdk/executor"
)

func main() {
	if logdriver.IsDriver(os.Args) {
		logdriver.Main()
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: hclogKeys}))
	// The containerd client logs through logrus on stderr; its info lines
	// (every failed registry request) would drown the plugin's own.
	_ = ctrdlog.SetLevel("warn")
	executor.Serve(ctrexec.New(ctrexec.Options{
		Logger: logger,
		NewNetwork: func(stateDir string) (ctrexec.Network, error) {
			return tasknet.New(tasknet.Config{StateDir: stateDir, Logger: logger.With("part", "tasknet")})
		},
	}))
}

// hclogTime is the time format go-plugin parses in hclog's JSON lines.
const hclogTime = "2006-01-02T15:04:05.000000Z07:00"

// hclogKeys renames slog's JSON keys to hclog's, which go-plugin reads on
// the plugin's stderr to re-level each line into the kernel's log.
func hclogKeys(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.LevelKey:
		level := a.Value.Any().(slog.Level)
		name := "info"
		switch {
		case level < slog.LevelInfo:
			name = "debug"
		case level >= slog.LevelError:
			name = "error"
		case level >= slog.LevelWarn:
			name = "warn"
		}
		return slog.String("@level", name)
	case slog.MessageKey:
		return slog.String("@message", a.Value.String())
	case slog.TimeKey:
		return slog.String("@timestamp", a.Value.Time().Format(hclogTime))
	}
	return a
}
