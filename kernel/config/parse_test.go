package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/shoalhq/shoal/sdk"
)

// examplePath is the documented example at the repository root.
const examplePath = "../../config.example.toml"

func TestExampleEqualsDefault(t *testing.T) {
	got, err := Load(examplePath)
	if err != nil {
		t.Fatalf("Load(%s) = %v", examplePath, err)
	}
	// Nothing opaque to normalize: the example's plugin tables are comments.
	if want := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("Load(%s) =\n%+v\nwant Default() =\n%+v", examplePath, got, want)
	}
}

// TestExampleDocumentsEverySetting fails when a setting is added to Config
// but not to config.example.toml (the DeepEqual above cannot notice: the
// decoder leaves a missing key at its default).
func TestExampleDocumentsEverySetting(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var c Config
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range settingKeys(reflect.TypeFor[Config](), nil) {
		if !md.IsDefined(key...) {
			t.Errorf("config.example.toml does not set %s", key)
		}
	}
}

// settingKeys lists the TOML keys of the leaf settings of a struct type;
// the plugins map is skipped (the example shows it commented out).
func settingKeys(typ reflect.Type, prefix toml.Key) []toml.Key {
	var keys []toml.Key
	for f := range typ.Fields() {
		name := f.Tag.Get("toml")
		key := append(append(toml.Key{}, prefix...), name)
		switch {
		case f.Type.Kind() == reflect.Map:
		case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[Duration]():
			keys = append(keys, settingKeys(f.Type, key)...)
		default:
			keys = append(keys, key)
		}
	}
	return keys
}

func TestParseMinimal(t *testing.T) {
	got, err := Parse([]byte("version = 1\n"))
	if err != nil {
		t.Fatalf("Parse(version = 1) = %v", err)
	}
	if want := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(version = 1) = %+v, want Default() %+v", got, want)
	}
}

func TestParseOverrides(t *testing.T) {
	in := `
version = 1
[node]
role = "worker"
data_dir = "/srv/shoal"
[raft]
heartbeat_timeout = "1s"
election_timeout = "2s"
[join]
addrs = ["10.0.0.1:4242", "[fd00::1]:4242", "mgr.example:4242"]
token = "SHOAL-1-abc"
[log]
format = "json"
`
	got, err := Parse([]byte(in))
	if err != nil {
		t.Fatalf("Parse = %v", err)
	}
	want := Default()
	want.Node.Role = RoleWorker
	want.Node.DataDir = "/srv/shoal"
	want.Raft.HeartbeatTimeout = Duration{time.Second}
	want.Raft.ElectionTimeout = Duration{2 * time.Second}
	want.Join.Addrs = []string{"10.0.0.1:4242", "[fd00::1]:4242", "mgr.example:4242"}
	want.Join.Token = "SHOAL-1-abc"
	want.Log.Format = FormatJSON
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", got, want)
	}
}

// TestParseErrors checks that every kind of bad file is rejected with an
// error naming the key and its line.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		// want are substrings of the error, in order.
		want []string
		// field, when set, must be a field of the sdk.FieldErrors.
		field string
	}{
		{"unknown top-level key", "version = 1\nbogus = 2\n",
			[]string{"bogus: unknown key (line 2)"}, "bogus"},
		{"unknown nested key", "version = 1\n\n[node]\nrole = \"manager\"\nbogus = 2\n",
			[]string{"node.bogus: unknown key (line 5)"}, "node.bogus"},
		{"unknown table named once", "version = 1\n[bogus]\nx = 1\ny = 2\n",
			[]string{"bogus: unknown key (line 2)"}, "bogus"},
		{"unknown dotted key", "version = 1\n[node]\nx.y = 1\n",
			[]string{"node.x.y: unknown key (line 3)"}, "node.x.y"},
		{"unknown key in inline table", "version = 1\nnode = { bogus = 1 }\n",
			[]string{"node.bogus: unknown key (line 2)"}, "node.bogus"},
		{"unknown key deep in raft", "version = 1\n[raft]\n\nheartbeat_timout = \"1s\"\n",
			[]string{"raft.heartbeat_timout: unknown key (line 4)"}, "raft.heartbeat_timout"},
		{"unknown key in plugin table", "version = 1\n[plugins.scheduler]\npath = \"/x\"\nbogus = 1\n",
			[]string{"plugins.scheduler.bogus: unknown key (line 4)"}, "plugins.scheduler.bogus"},
		{"key in wrong case", "version = 1\n[node]\nData_Dir = \"/x\"\n",
			[]string{"node.Data_Dir: unknown key; keys are case-sensitive: did you mean node.data_dir? (line 3)"}, "node.Data_Dir"},
		{"table in wrong case", "version = 1\n[Raft]\nHeartbeat_Timeout = \"1s\"\n",
			[]string{"Raft: unknown key; keys are case-sensitive: did you mean raft? (line 2)"}, "Raft"},
		{"malformed duration", "version = 1\n[raft]\nheartbeat_timeout = \"5x\"\n",
			[]string{`raft.heartbeat_timeout: invalid duration "5x"`, "(line 3)"}, "raft.heartbeat_timeout"},
		{"duration without unit", "version = 1\n[cluster]\nheartbeat_period = 5\n",
			[]string{`cluster.heartbeat_period: invalid duration "5"`, "(line 3)"}, "cluster.heartbeat_period"},
		{"wrong type", "version = 1\n[raft]\nsnapshot_threshold = \"many\"\n",
			[]string{"raft.snapshot_threshold: incompatible types", "(line 3)"}, "raft.snapshot_threshold"},
		{"table where a value goes", "version = 1\n[node.role]\nx = 1\n",
			[]string{"node.role: incompatible types", "(line 2)"}, "node.role"},
		{"value where a table goes", "version = 1\nraft = 5\n",
			[]string{"raft: type mismatch", "(line 2)"}, "raft"},
		{"plugin config not a table", "version = 1\n[plugins.ipam]\nconfig = 5\n",
			[]string{"plugins.ipam.config: must be a table, got an integer (line 3)"}, "plugins.ipam.config"},
		{"syntax error", "version = 1\n[node\n",
			[]string{"toml syntax: line 3"}, ""},
		{"syntax error after a key", "version = 1\n[raft]\nheartbeat_timeout = \"1s\"\nelection_timeout = 1s\n",
			[]string{"toml syntax: line 4", "(last key read: raft)"}, ""},
		{"duplicate key", "version = 1\n[node]\nrole = \"worker\"\nrole = \"manager\"\n",
			[]string{"toml syntax: line 4", "role"}, ""},
		{"missing version", "[node]\nrole = \"manager\"\n",
			[]string{"version: missing"}, "version"},
		{"empty file", "",
			[]string{"version: missing"}, "version"},
		{"wrong version", "version = 2\n",
			[]string{"version: must be 1, got 2 (line 1)"}, "version"},
		{"version as string", "version = \"1\"\n",
			[]string{"version: incompatible types", "(line 1)"}, "version"},
		{"validation names the line", "version = 1\n[node]\n\nrole = \"boss\"\n",
			[]string{`node.role: must be "manager" or "worker", got "boss" (line 4)`}, "node.role"},
		{"validation names the line of a list", "version = 1\n[join]\ntoken = \"t\"\naddrs = [\"a:1\", \"b\"]\n",
			[]string{`join.addrs[1]: must be host:port, got "b" (line 4)`}, "join.addrs[1]"},
		{"unknown plugin kind", "version = 1\n[plugins.network]\npath = \"/x\"\n",
			[]string{`plugins.network: unknown plugin kind "network"`, "(line 2)"}, "plugins.network"},
		{"unknown key and bad value together", "version = 1\nbogus = 1\n[log]\nlevel = \"loud\"\n",
			[]string{"bogus: unknown key (line 2)", `log.level: must be one of "debug", "info", "warn", "error", got "loud" (line 4)`}, "log.level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse(%q) = nil error, want %q", tt.in, tt.want)
			}
			msg := err.Error()
			rest := msg
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("Parse(%q) = %q, want it to contain %q (in order)", tt.in, msg, tt.want)
				}
				rest = rest[i+len(w):]
			}
			if tt.field == "" {
				return
			}
			var fe sdk.FieldErrors
			if !errors.As(err, &fe) {
				t.Fatalf("Parse(%q) = %T, want sdk.FieldErrors", tt.in, err)
			}
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Errorf("errors.Is(Parse(%q), ErrInvalidArgument) = false, want true", tt.in)
			}
			if !hasField(fe, tt.field) {
				t.Errorf("Parse(%q) fields = %v, want %s among them", tt.in, fe, tt.field)
			}
		})
	}
}

func hasField(fe sdk.FieldErrors, field string) bool {
	for _, f := range fe {
		if f.Field == field {
			return true
		}
	}
	return false
}

func TestParsePluginConfigOpaque(t *testing.T) {
	in := `
version = 1
[plugins.scheduler]
path = "/usr/libexec/shoal/scheduler-spread"
[plugins.scheduler.config]
Strategy = "spread"          # any case: the plugin's keys, not the kernel's
weights.cpu = 2
weights.memory = 1.5
[plugins.scheduler.config.nested]
list = ["a", "b"]
[plugins.executor.config]
containerd_socket = "/run/containerd/containerd.sock"
[plugins.ipam]
path = "/opt/ipam"
`
	got, err := Parse([]byte(in))
	if err != nil {
		t.Fatalf("Parse = %v", err)
	}
	if n := len(got.Plugins); n != 3 {
		t.Fatalf("len(Plugins) = %d, want 3", n)
	}
	sched := got.Plugins[KindScheduler]
	if want := "/usr/libexec/shoal/scheduler-spread"; sched.Path != want {
		t.Errorf("scheduler path = %q, want %q", sched.Path, want)
	}
	// The plugin gets its table back as TOML and can decode it strictly.
	var cfg struct {
		Strategy string
		Weights  struct {
			CPU    int     `toml:"cpu"`
			Memory float64 `toml:"memory"`
		} `toml:"weights"`
		Nested struct {
			List []string `toml:"list"`
		} `toml:"nested"`
	}
	md, err := toml.Decode(string(sched.Config), &cfg)
	if err != nil {
		t.Fatalf("decode scheduler config %q: %v", sched.Config, err)
	}
	if u := md.Undecoded(); len(u) != 0 {
		t.Errorf("scheduler config undecoded keys = %v, want none", u)
	}
	if cfg.Strategy != "spread" || cfg.Weights.CPU != 2 || cfg.Weights.Memory != 1.5 || !reflect.DeepEqual(cfg.Nested.List, []string{"a", "b"}) {
		t.Errorf("scheduler config = %+v, want the values written", cfg)
	}

	exec := got.Plugins[KindExecutor]
	if exec.Path != "" {
		t.Errorf("executor path = %q, want empty (the bundled plugin)", exec.Path)
	}
	if want := "containerd_socket = \"/run/containerd/containerd.sock\"\n"; string(exec.Config) != want {
		t.Errorf("executor config = %q, want %q", exec.Config, want)
	}
	if c := got.Plugins[KindIPAM].Config; c != nil {
		t.Errorf("ipam config = %q, want nil (no table)", c)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "node.toml")
	if err := os.WriteFile(good, []byte("version = 1\n[log]\nlevel = \"debug\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(good)
	if err != nil || c.Log.Level != LevelDebug {
		t.Errorf("Load(good) = %q, %v; want level debug, nil", c.Log.Level, err)
	}

	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("version = 1\nbogus = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "bogus: unknown key (line 2)") {
		t.Errorf("Load(bad) = %v, want an error naming the file, the key and the line", err)
	}
	if !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("errors.Is(Load(bad), ErrInvalidArgument) = false, want true")
	}

	missing := filepath.Join(dir, "missing.toml")
	if _, err := Load(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want os.ErrNotExist", err)
	}
}

// TestParseReportsEveryError gives files with several independent errors
// of different kinds (BurntSushi/toml alone stops at the first value it
// cannot decode): each must be named, with its key and line, in one error,
// in the order of the file.
func TestParseReportsEveryError(t *testing.T) {
	checkParseErrors(t, []parseCase{
		{
			name: "unknown keys, bad values and out-of-range values",
			in: `version = 1
bogus = 1
[node]
Data_Dir = "/x"
role = 5
[raft]
heartbeat_timeout = "5x"
snapshot_threshold = "many"
max_append_entries = 5000
trailing_logs = -1
x.y = 2
[cluster]
heartbeat_period = 5
task_history_retention = 2000
[log]
level = "loud"
[plugins.scheduler]
path = "relative"
extra = 1
[plugins.ipam]
config = 5
[Gossip]
listen_addr = "x"
`,
			want: []string{
				"bogus: unknown key (line 2)",
				"node.Data_Dir: unknown key; keys are case-sensitive: did you mean node.data_dir? (line 4)",
				"node.role: incompatible types: TOML value has type int64; destination has type string (line 5)",
				`raft.heartbeat_timeout: invalid duration "5x": want a number with a unit, like "500ms", "5s" or "2h" (line 7)`,
				"raft.snapshot_threshold: incompatible types: TOML value has type string; destination has type integer (line 8)",
				"raft.max_append_entries: must be between 1 and 1024, got 5000 (line 9)",
				"raft.trailing_logs: must be at least 0, got -1 (line 10)",
				"raft.x.y: unknown key (line 11)",
				`cluster.heartbeat_period: invalid duration "5": want a number with a unit, like "500ms", "5s" or "2h" (line 13)`,
				"cluster.task_history_retention: must be between 0 and 1000, got 2000 (line 14)",
				`log.level: must be one of "debug", "info", "warn", "error", got "loud" (line 16)`,
				`plugins.scheduler.path: must be an absolute path, got "relative" (line 18)`,
				"plugins.scheduler.extra: unknown key (line 19)",
				"plugins.ipam.config: must be a table, got an integer (line 21)",
				"Gossip: unknown key; keys are case-sensitive: did you mean gossip? (line 22)",
			},
		},
		{
			// A value that does not decode keeps its default; the checks
			// against it (election_timeout >= heartbeat_timeout, addrs with
			// a token) would describe the default, not the file.
			name: "no check against a value that did not decode",
			in: `version = 1
[raft]
heartbeat_timeout = 1
election_timeout = "200ms"
[join]
addrs = "10.0.0.1:4242"
token = "t"
`,
			want: []string{
				`raft.heartbeat_timeout: invalid duration "1"`,
				"join.addrs: incompatible types: TOML value has type string; destination has type slice (line 6)",
			},
		},
	})
}

// TestParseReportsEveryMismatchedTable gives files whose tables are of the
// wrong type, beside other errors: each is named, as in
// TestParseReportsEveryError.
func TestParseReportsEveryMismatchedTable(t *testing.T) {
	checkParseErrors(t, []parseCase{
		{
			name: "tables of the wrong type, and no version",
			in:   "raft = 5\nnode = []\n[[cluster]]\n[log]\nformat = \"xml\"\n",
			want: []string{
				"version: missing",
				"raft: type mismatch: want a table, got an integer (line 1)",
				"node: type mismatch: want a table, got an array (line 2)",
				"cluster: type mismatch: want a table, got an array (line 3)",
				`log.format: must be one of "text", "json", got "xml" (line 5)`,
			},
		},
		{
			name: "a plugin that is not a table beside a bad one",
			in:   "version = 1\n[plugins]\nscheduler = 1\n[plugins.ipam]\npath = 2\n",
			want: []string{
				"plugins.scheduler: type mismatch: want a table, got an integer (line 3)",
				"plugins.ipam.path: incompatible types",
			},
		},
	})
}

// parseCase is a file and the errors Parse must report for it.
type parseCase struct {
	name string
	in   string
	// want are the errors, in order, each "field: message start" and
	// " (line N)" at its end.
	want []string
}

// checkParseErrors runs each case as a subtest: Parse returns sdk.FieldErrors
// that start with want, one for one and in order, each ending with its line
// (but for a missing version).
func checkParseErrors(t *testing.T, tests []parseCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			var fe sdk.FieldErrors
			if !errors.As(err, &fe) {
				t.Fatalf("Parse = %v, want sdk.FieldErrors", err)
			}
			got := make([]string, len(fe))
			for i, f := range fe {
				got[i] = f.Error()
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Parse = %d errors:\n  %s\nwant %d:\n  %s", len(got), strings.Join(got, "\n  "), len(tt.want), strings.Join(tt.want, "\n  "))
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("Parse: error %d = %q, want it to start with %q", i, got[i], w)
				}
				if strings.HasPrefix(got[i], "version: missing") {
					continue
				}
				if !regexp.MustCompile(`\(line [1-9][0-9]*\)$`).MatchString(got[i]) {
					t.Errorf("Parse: error %d = %q, want it to end with its line", i, got[i])
				}
			}
		})
	}
}

func TestMentions(t *testing.T) {
	tests := []struct {
		msg, key string
		want     bool
	}{
		{"must be at least raft.heartbeat_timeout (300ms), got 200ms", "raft.heartbeat_timeout", true},
		{"must be at most raft.heartbeat_timeout", "raft.heartbeat_timeout", true},
		{"must be at most raft.heartbeat_timeout.", "raft.heartbeat_timeout", true},
		{"must be at least raft.heartbeat_timeout_x", "raft.heartbeat_timeout", false},
		{"must be at least xraft.heartbeat_timeout", "raft.heartbeat_timeout", false},
		{"must be at least raft.heartbeat_timeout (300ms)", "raft", true},
		{"must not use the port of manager.listen_addr", "manager", true},
		{"other nodes can reach the node", "node", false},
		{"the raft timeouts", "raft", false},
	}
	for _, tt := range tests {
		if got := mentions(tt.msg, tt.key); got != tt.want {
			t.Errorf("mentions(%q, %q) = %t, want %t", tt.msg, tt.key, got, tt.want)
		}
	}
}
