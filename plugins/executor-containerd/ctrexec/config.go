package ctrexec

import (
	"fmt"
	"math"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/shoalhq/shoal/plugins/executor-containerd/logdriver"
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
	// LogMaxSize is the size a task's stdout or stderr file does not grow
	// past: the line that would take it past goes to a new file, and the
	// full one is rotated (stdout.log becomes stdout.log.1, stdout.log.1
	// becomes stdout.log.2...). A size in bytes ("1048576") or with a unit,
	// KiB, MiB, GiB or KB, MB, GB ("512KiB", "1GB"); at least 4KiB.
	// A single line longer than this gets a file of its own. It applies to
	// tasks started after it is set: a task keeps the limits it started
	// with. Default: "10MiB" (also for "0").
	LogMaxSize string `toml:"log_max_size"`
	// LogMaxFiles is how many files of each stream of a task are kept, the
	// current one included, so a task keeps about
	// 2 x LogMaxFiles x LogMaxSize of logs; the oldest file is deleted at
	// rotation. With 1 the full file is deleted and a new one started.
	// Logs reads every kept file; with Follow it loses lines only if a
	// stream rotates more than LogMaxFiles times in the 100ms between two
	// of its reads. 1 to 100. Default: 3.
	LogMaxFiles int `toml:"log_max_files"`
}

// DefaultConfig is the configuration of an empty [plugins.executor.config].
func DefaultConfig() Config {
	return Config{
		Namespace:   "shoal",
		Snapshotter: "overlayfs",
		Runtime:     "io.containerd.runc.v2",
		PullTimeout: "10m",
		LogMaxSize:  "10MiB",
		LogMaxFiles: defaultLogMaxFiles,
	}
}

const (
	defaultLogMaxSize  = 10 << 20
	defaultLogMaxFiles = 3
	// maxLogMaxFiles bounds LogMaxFiles: Logs holds every file of a stream
	// open while it reads them.
	maxLogMaxFiles = 100
)

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
	if _, err := parseSize(c.LogMaxSize); err != nil {
		fe.Add("config.log_max_size", "%v", err)
	}
	if c.LogMaxFiles < 1 || c.LogMaxFiles > maxLogMaxFiles {
		fe.Add("config.log_max_files", "must be 1 to %d, got %d", maxLogMaxFiles, c.LogMaxFiles)
	}
	return fe.Err()
}

// logLimits are the limits the log drivers of new tasks are started with.
// c is valid.
func (c Config) logLimits() logdriver.Limits {
	size, _ := parseSize(c.LogMaxSize)
	if size == 0 {
		size = defaultLogMaxSize
	}
	return logdriver.Limits{MaxSize: size, MaxFiles: c.LogMaxFiles}
}

// sizeUnits are the units parseSize knows, case-sensitive.
var sizeUnits = map[string]int64{
	"": 1, "B": 1,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
	"KB": 1e3, "MB": 1e6, "GB": 1e9,
}

// parseSize parses a log file size: a whole number of bytes or of a
// unit of sizeUnits ("10MiB"), at least logdriver.MinSize; "" and "0" are
// 0, the default.
func parseSize(s string) (int64, error) {
	if s == "" || s == "0" {
		return 0, nil
	}
	digits := len(s) - len(strings.TrimLeft(s, "0123456789"))
	n, err := strconv.ParseInt(s[:digits], 10, 64)
	unit, ok := sizeUnits[s[digits:]]
	if digits == 0 || err != nil || !ok {
		return 0, fmt.Errorf("must be a whole number of bytes or of KiB, MiB, GiB, KB, MB or GB, such as \"10MiB\", got %q", s)
	}
	if n > math.MaxInt64/unit {
		return 0, fmt.Errorf("must be at most 8EiB, got %q", s)
	}
	if n*unit < logdriver.MinSize {
		return 0, fmt.Errorf("must be at least 4KiB, got %q", s)
	}
	return n * unit, nil
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
