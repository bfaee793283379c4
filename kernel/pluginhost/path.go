package pluginhost

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Resolve returns the binary of a [plugins.<kind>] table: its configured
// path, or, when that is empty, the plugin named bundled that ships with
// shoal, next to the running shoal binary. The error names the config
// field and says what to do; it is of kind fs.ErrNotExist when the bundled
// plugin is missing.
func Resolve(kind, configured, bundled string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("plugins.%s.path: locating the bundled %s: %w", kind, bundled, err)
	}
	return resolveBeside(kind, bundled, exe)
}

// resolveBeside finds bundled in exe's directory.
func resolveBeside(kind, bundled, exe string) (string, error) {
	p := filepath.Join(filepath.Dir(exe), bundled)
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("plugins.%s.path: not set, and the bundled %s is not next to %s: install it there or set the path (%w)", kind, bundled, exe, fs.ErrNotExist)
		}
		return "", fmt.Errorf("plugins.%s.path: %w", kind, err)
	}
	return p, nil
}
