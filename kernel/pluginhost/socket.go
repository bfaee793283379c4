package pluginhost

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-plugin"

	"github.com/shoalhq/shoal/sdk"
)

// maxSocketPath is the longest unix socket path Linux accepts (sun_path is
// 108 bytes with the terminating NUL).
const maxSocketPath = 107

// socketName is the longest name go-plugin gives a plugin's socket:
// os.CreateTemp(dir, "plugin") appends up to 10 digits.
const socketName = "/plugin0123456789"

// checkSocketDir tells, before any plugin starts, whether a socket in dir
// would be too long to bind: the plugin would otherwise fail with an
// obscure "bind: invalid argument".
func checkSocketDir(dir string) error {
	if n := len(dir) + len(socketName); n > maxSocketPath {
		return fmt.Errorf("socket directory %s: too long for unix sockets (%d bytes with the socket name, at most %d)", dir, n, maxSocketPath)
	}
	return nil
}

// prepareSocketDir creates dir, private to the agent's user, and removes
// what a killed plugin left in it. Only the owner may connect: the plugin's
// gRPC server trusts whoever can reach its socket, AutoMTLS aside.
func prepareSocketDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	return removeStale(dir)
}

// removeStale removes the sockets (and the placeholder files go-plugin
// creates before binding) that plugins left in dir. A plugin that exits
// cleanly removes its socket; one that is killed does not. Only call it
// while no plugin of the directory runs. Other files are left alone, in
// case an operator pointed the directory somewhere shared.
func removeStale(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("remove stale sockets: %w", err)
	}
	var errs []error
	for _, e := range entries {
		stale := e.Type()&fs.ModeSocket != 0 || (e.Type().IsRegular() && strings.HasPrefix(e.Name(), "plugin"))
		if !stale {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove stale sockets: %w", err)
	}
	return nil
}

// pluginEnv is the plugin's environment: the agent's, minus go-plugin's own
// variables (go-plugin sets them; inherited values would override its
// choices), plus the directory where the plugin creates its socket.
// go-plugin reads PLUGIN_UNIX_SOCKET_DIR on the plugin side; its client sets
// it only when it runs the process itself through a RunnerFunc.
func pluginEnv(socketDir string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PLUGIN_") || strings.HasPrefix(kv, sdk.Handshake.MagicCookieKey+"=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, plugin.EnvUnixSocketDir+"="+socketDir)
}
