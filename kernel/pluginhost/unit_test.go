package pluginhost

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/shoalhq/shoal/kernel/hclogslog"
	"github.com/shoalhq/shoal/sdk"
)

func TestQualify(t *testing.T) {
	plain := errors.New("boom")
	tests := []struct {
		in   error
		want error
	}{
		{plain, plain},
		{
			sdk.FieldErrors{{Field: "config.zone", Message: "unknown key"}, {Field: "config", Message: "bad toml"}, {Field: "other", Message: "x"}},
			sdk.FieldErrors{{Field: "plugins.scheduler.config.zone", Message: "unknown key"}, {Field: "plugins.scheduler.config", Message: "bad toml"}, {Field: "other", Message: "x"}},
		},
		{
			fmt.Errorf("plugin config: %w", sdk.FieldErrors{{Field: "configured", Message: "x"}}),
			sdk.FieldErrors{{Field: "configured", Message: "x"}},
		},
	}
	for _, tt := range tests {
		if got := qualify("scheduler", tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("qualify(%v) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

func TestPluginEnv(t *testing.T) {
	t.Setenv("PLUGIN_UNIX_SOCKET_DIR", "/elsewhere")
	t.Setenv(sdk.Handshake.MagicCookieKey, "stale")
	t.Setenv("SHOAL_TEST_KEPT", "yes")
	env := pluginEnv("/run/sockets/scheduler")
	var plugin []string
	for _, kv := range env {
		if strings.HasPrefix(kv, "PLUGIN_") || strings.HasPrefix(kv, sdk.Handshake.MagicCookieKey+"=") {
			plugin = append(plugin, kv)
		}
	}
	if want := []string{"PLUGIN_UNIX_SOCKET_DIR=/run/sockets/scheduler"}; !slices.Equal(plugin, want) {
		t.Errorf("pluginEnv go-plugin variables = %q, want %q", plugin, want)
	}
	if !slices.Contains(env, "SHOAL_TEST_KEPT=yes") {
		t.Errorf("pluginEnv dropped the agent's SHOAL_TEST_KEPT")
	}
	if len(env) != len(os.Environ())-1 {
		t.Errorf("len(pluginEnv) = %d, want the agent's %d minus the stale cookie", len(env), len(os.Environ()))
	}
}

func TestLineLogger(t *testing.T) {
	tests := []struct {
		writes []string
		want   []string
	}{
		{[]string{"a\nb\n"}, []string{"a", "b"}},
		{[]string{"par", "tial\r\n"}, []string{"partial"}},
		{[]string{"\n\n"}, nil},
		{[]string{"held"}, nil},
		{[]string{strings.Repeat("x", hclogslog.MaxLine)}, []string{strings.Repeat("x", hclogslog.MaxLine)}},
	}
	for _, tt := range tests {
		l := newLogs()
		w := lineLogger(l.logger())
		for _, s := range tt.writes {
			w.Write([]byte(s))
		}
		var got []string
		for _, r := range l.recs {
			got = append(got, r["msg"].(string))
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("lineLogger(%.20q) logged %.20q, want %.20q", tt.writes, got, tt.want)
		}
	}
}

func TestGoPluginHandler(t *testing.T) {
	l := newLogs()
	logger := slog.New(goPluginHandler{l.logger().With("plugin", "scheduler").Handler()})
	logger.Info("plugin process exited", "plugin", "/usr/lib/shoal/spread", "timestamp", "2026-01-01T00:00:00Z", "id", 42)
	want := map[string]any{"level": "INFO", "msg": "plugin process exited", "plugin": "scheduler", "binary": "/usr/lib/shoal/spread", "id": int64(42)}
	if len(l.recs) != 1 || !reflect.DeepEqual(l.recs[0], want) {
		t.Errorf("logged %v, want %v", l.recs, want)
	}
}

func TestResolve(t *testing.T) {
	if got, err := Resolve("executor", "/opt/x/executor", "executor-containerd"); err != nil || got != "/opt/x/executor" {
		t.Errorf("Resolve(configured) = %q, %v, want the configured path", got, err)
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "shoal")
	if _, err := resolveBeside("executor", "executor-containerd", exe); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "plugins.executor.path: not set, and the bundled executor-containerd is not next to "+exe) {
		t.Errorf("resolveBeside(missing) = %v, want fs.ErrNotExist naming the field, the plugin and the binary", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "executor-containerd"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := resolveBeside("executor", "executor-containerd", exe); err != nil || got != filepath.Join(dir, "executor-containerd") {
		t.Errorf("resolveBeside(present) = %q, %v, want it", got, err)
	}
}
