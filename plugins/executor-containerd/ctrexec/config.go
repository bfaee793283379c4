package ctrexec

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/shoalhq/shoal/sdk"
)

// Config is the [plugins.executor.config] table.
type Config struct {
	// Namespace is the containerd namespace that holds the node's tasks;
	// it is the executor's whole state. Default: "shoal".
	Namespace string `toml:"namespace"`
	// ContainerdAddress is the containerd socket; it overrides the node's
	// (the embedded containerd's, or the one the node config names).
	// Default: "" (the node's).
	ContainerdAddress string `toml:"containerd_address"`
	// Snapshotter makes the containers' root filesystems: "overlayfs" or,
	// where the host filesystem does not support overlay, "native".
	// Default: "overlayfs".
	Snapshotter string `toml:"snapshotter"`
	// Runtime is containerd's runtime for tasks. Default:
	// "io.containerd.runc.v2".
	Runtime string `toml:"runtime"`
	// InsecureRegistries are registries ("host:port" or "host") pulled
	// over plain HTTP instead of HTTPS. Registries on localhost, 127.0.0.1
	// and ::1 always are. Default: [].
	InsecureRegistries []string `toml:"insecure_registries"`
	// PullTimeout bounds one image pull, a Go duration. Default: "10m".
	PullTimeout string `toml:"pull_timeout"`
}

// DefaultConfig is the configuration of an empty [plugins.executor.config].
func DefaultConfig() Config {
	return Config{
		Namespace:   "shoal",
		Snapshotter: "overlayfs",
		Runtime:     "io.containerd.runc.v2",
		PullTimeout: "10m",
	}
}

// namespaceRE is containerd's rule for namespace names.
var namespaceRE = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

// validate checks c and names every bad field.
func (c Config) validate() error {
	var fe sdk.FieldErrors
	if len(c.Namespace) > 76 || !namespaceRE.MatchString(c.Namespace) {
		fe.Add("config.namespace", "must be 1 to 76 letters, digits and inner . _ -, got %q", c.Namespace)
	}
	if c.ContainerdAddress != "" && !filepath.IsAbs(c.ContainerdAddress) {
		fe.Add("config.containerd_address", "must be the absolute path of a unix socket, got %q", c.ContainerdAddress)
	}
	switch c.Snapshotter {
	case "overlayfs", "native", "btrfs", "zfs", "devmapper":
	default:
		fe.Add("config.snapshotter", "must be overlayfs, native, btrfs, zfs or devmapper, got %q", c.Snapshotter)
	}
	if c.Runtime == "" {
		fe.Add("config.runtime", "must not be empty")
	}
	for i, r := range c.InsecureRegistries {
		host, port, err := net.SplitHostPort(r)
		if err != nil {
			host, port = r, ""
		}
		if host == "" {
			fe.Add(fmt.Sprintf("config.insecure_registries[%d]", i), "must be host or host:port, got %q", r)
			continue
		}
		if port != "" {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				fe.Add(fmt.Sprintf("config.insecure_registries[%d]", i), "port must be 1 to 65535, got %q", r)
			}
		}
	}
	if _, err := parseDuration(c.PullTimeout); err != nil {
		fe.Add("config.pull_timeout", "%v", err)
	}
	return fe.Err()
}

// parseDuration parses a positive Go duration ("10m").
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("must be a duration such as \"10m\", got %q", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("must be positive, got %q", s)
	}
	return d, nil
}
