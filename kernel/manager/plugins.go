package manager

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-plugin"

	"github.com/shoalhq/shoal/kernel/config"
	"github.com/shoalhq/shoal/kernel/pluginhost"
	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/ipam"
	"github.com/shoalhq/shoal/sdk/scheduler"
)

// bundledScheduler is the scheduler plugin that ships with shoal, found
// next to the shoal binary when [plugins.scheduler] names no path.
const bundledScheduler = "scheduler-spread"

// bundledIPAM is the IPAM plugin that ships with shoal (plugins/ipam).
const bundledIPAM = "ipam"

// pluginPath resolves a plugin binary: the configured path, or the bundled
// plugin of that name next to the running shoal binary.
func pluginPath(cfg config.Config, kind, bundled string) (string, error) {
	if p := cfg.Plugins[kind].Path; p != "" {
		return p, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("plugins.%s.path: locating the bundled %s: %w", kind, bundled, err)
	}
	p := filepath.Join(filepath.Dir(exe), bundled)
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("plugins.%s.path: not set, and the bundled %s is not next to %s: install it there or set the path", kind, bundled, exe)
		}
		return "", fmt.Errorf("plugins.%s.path: %w", kind, err)
	}
	return p, nil
}

func newSchedulerHost(cfg config.Config, logger *slog.Logger) (*pluginhost.Host[scheduler.Scheduler], error) {
	path, err := pluginPath(cfg, sdk.KindScheduler, bundledScheduler)
	if err != nil {
		return nil, err
	}
	return pluginhost.New[scheduler.Scheduler](pluginhost.Config{
		Kind:      sdk.KindScheduler,
		Path:      path,
		Config:    cfg.Plugins[sdk.KindScheduler].Config,
		SocketDir: filepath.Join(cfg.Node.DataDir, "plugins"),
		Plugins:   plugin.PluginSet{sdk.KindScheduler: &scheduler.Plugin{}},
		Logger:    logger.With("part", "pluginhost"),
	})
}

func newIPAMHost(cfg config.Config, logger *slog.Logger) (*pluginhost.Host[ipam.IPAM], error) {
	path, err := pluginPath(cfg, sdk.KindIPAM, bundledIPAM)
	if err != nil {
		return nil, err
	}
	return pluginhost.New[ipam.IPAM](pluginhost.Config{
		Kind:      sdk.KindIPAM,
		Path:      path,
		Config:    cfg.Plugins[sdk.KindIPAM].Config,
		SocketDir: filepath.Join(cfg.Node.DataDir, "plugins"),
		Plugins:   plugin.PluginSet{sdk.KindIPAM: &ipam.Plugin{}},
		Logger:    logger.With("part", "pluginhost"),
	})
}
