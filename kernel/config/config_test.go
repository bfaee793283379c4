package config

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"
)

func TestPaths(t *testing.T) {
	c := Default()
	c.Node.DataDir = "/srv/shoal"
	tests := []struct {
		name, got, want string
	}{
		{"RaftDir", c.RaftDir(), "/srv/shoal/raft"},
		{"CertDir", c.CertDir(), "/srv/shoal/certificates"},
		{"WorkerDir", c.WorkerDir(), "/srv/shoal/worker"},
		{"PluginDir", c.PluginDir(KindIPAM), "/srv/shoal/plugins/ipam"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s() = %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestRoleHelpers(t *testing.T) {
	tests := []struct {
		role                 Role
		addrs                []string
		isManager, bootstrap bool
	}{
		{RoleManager, nil, true, true},
		{RoleManager, []string{"10.0.0.1:4242"}, true, false},
		{RoleWorker, []string{"10.0.0.1:4242"}, false, false},
	}
	for _, tt := range tests {
		c := Default()
		c.Node.Role = tt.role
		c.Join.Addrs = tt.addrs
		if c.Role() != tt.role || c.IsManager() != tt.isManager || c.Bootstrap() != tt.bootstrap {
			t.Errorf("role %s, addrs %v: Role, IsManager, Bootstrap = %s, %v, %v; want %s, %v, %v",
				tt.role, tt.addrs, c.Role(), c.IsManager(), c.Bootstrap(), tt.role, tt.isManager, tt.bootstrap)
		}
	}
}

func TestNodeName(t *testing.T) {
	if got, err := (Node{Hostname: "n1"}).Name(); err != nil || got != "n1" {
		t.Errorf("Node{Hostname: n1}.Name() = %q, %v; want n1", got, err)
	}
	want, err := os.Hostname()
	if err != nil {
		t.Skipf("os.Hostname: %v", err)
	}
	if got, err := (Node{}).Name(); err != nil || got != want {
		t.Errorf("Node{}.Name() = %q, %v; want %q", got, err, want)
	}
}

func TestLogHandler(t *testing.T) {
	tests := []struct {
		log       Log
		wantLevel slog.Level
		json      bool
	}{
		{Log{Level: LevelDebug, Format: FormatText}, slog.LevelDebug, false},
		{Log{Level: LevelInfo, Format: FormatJSON}, slog.LevelInfo, true},
		{Log{Level: LevelWarn, Format: FormatText}, slog.LevelWarn, false},
		{Log{Level: LevelError, Format: FormatJSON}, slog.LevelError, true},
		{Log{}, slog.LevelInfo, false},
	}
	for _, tt := range tests {
		if got := tt.log.SlogLevel(); got != tt.wantLevel {
			t.Errorf("%+v.SlogLevel() = %v, want %v", tt.log, got, tt.wantLevel)
		}
		var buf bytes.Buffer
		logger := slog.New(tt.log.Handler(&buf))
		logger.Log(t.Context(), tt.wantLevel-1, "below")
		logger.Log(t.Context(), tt.wantLevel, "at")
		out := buf.String()
		if strings.Contains(out, "below") || !strings.Contains(out, "at") {
			t.Errorf("%+v handler wrote %q, want only the record at %v", tt.log, out, tt.wantLevel)
		}
		if isJSON := json.Valid(bytes.TrimSpace(buf.Bytes())); isJSON != tt.json {
			t.Errorf("%+v handler wrote %q: JSON = %v, want %v", tt.log, out, isJSON, tt.json)
		}
	}
}
