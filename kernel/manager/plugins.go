package manager

import (
	"log/slog"
	"path/filepath"

	"github.com/hashicorp/go-plugin"

	"github.com/shoalhq/shoal/kernel/config"
	"github.com/shoalhq/shoal/kernel/pluginhost"
	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/ipam"
	"github.com/shoalhq/shoal/sdk/scheduler"
)

// bundledScheduler is the scheduler plugin that ships with shoal, found
// next to the shoal binary when [plugins.scheduler] names no path (see
// pluginhost.Resolve).
const bundledScheduler = "scheduler-spread"

// bundledIPAM is the IPAM plugin that ships with shoal (plugins/ipam).
const bundledIPAM = "ipam"

func newSchedulerHost(cfg config.Config, path string, logger *slog.Logger) (*pluginhost.Host[scheduler.Scheduler], error) {
	return pluginhost.New[scheduler.Scheduler](hostConfig(cfg, sdk.KindScheduler, path, &scheduler.Plugin{}, logger))
}

func newIPAMHost(cfg config.Config, path string, logger *slog.Logger) (*pluginhost.Host[ipam.IPAM], error) {
	return pluginhost.New[ipam.IPAM](hostConfig(cfg, sdk.KindIPAM, path, &ipam.Plugin{}, logger))
}

// hostConfig is the pluginhost config of the plugin of kind at path.
func hostConfig(cfg config.Config, kind, path string, p plugin.Plugin, logger *slog.Logger) pluginhost.Config {
	return pluginhost.Config{
		Kind:      kind,
		Path:      path,
		Config:    cfg.Plugins[kind].Config,
		SocketDir: filepath.Join(cfg.Node.DataDir, "plugins"),
		Plugins:   plugin.PluginSet{kind: p},
		Logger:    logger.With("part", "pluginhost"),
	}
}
