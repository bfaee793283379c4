package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shoalhq/shoal/sdk"
)

func ms(n int) Duration { return Duration{time.Duration(n) * time.Millisecond} }

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v, want nil", err)
	}
}

// validateCase changes one thing in Default(); field and want are the field
// Validate names with the message (bounds included), or "" when the change
// is accepted.
type validateCase struct {
	name   string
	change func(c *Config)
	field  string
	want   string
}

// checkValidate runs each case as a subtest on a fresh Default(): Validate
// names the field with a message containing want, or accepts the change
// when field is empty.
func checkValidate(t *testing.T, tests []validateCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.change(&c)
			err := c.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var fe sdk.FieldErrors
			if !errors.As(err, &fe) {
				t.Fatalf("Validate() = %v, want sdk.FieldErrors naming %s", err, tt.field)
			}
			for _, f := range fe {
				if f.Field == tt.field && strings.Contains(f.Message, tt.want) {
					return
				}
			}
			t.Errorf("Validate() = %v, want %s: ...%s...", err, tt.field, tt.want)
		})
	}
}

// TestValidateVersion checks the validation of the config version.
func TestValidateVersion(t *testing.T) {
	checkValidate(t, []validateCase{
		{"version 0", func(c *Config) { c.Version = 0 }, "version", "must be 1, got 0"},
		{"version 2", func(c *Config) { c.Version = 2 }, "version", "must be 1, got 2"},
	})
}

// TestValidateNode checks the validation of the node's hostname, data
// directory and role.
func TestValidateNode(t *testing.T) {
	checkValidate(t, []validateCase{
		{"hostname set", func(c *Config) { c.Node.Hostname = "node-1.example" }, "", ""},
		{"hostname with space", func(c *Config) { c.Node.Hostname = "node 1" }, "node.hostname", `without spaces, got "node 1"`},
		{"hostname too long", func(c *Config) { c.Node.Hostname = strings.Repeat("a", 254) }, "node.hostname", "at most 253"},
		{"data_dir relative", func(c *Config) { c.Node.DataDir = "var/lib/shoal" }, "node.data_dir", `must be an absolute path, got "var/lib/shoal"`},
		{"data_dir empty", func(c *Config) { c.Node.DataDir = "" }, "node.data_dir", "must be an absolute path"},
		{"role invalid", func(c *Config) { c.Node.Role = "leader" }, "node.role", `must be "manager" or "worker", got "leader"`},
		{"role empty", func(c *Config) { c.Node.Role = "" }, "node.role", `got ""`},
		{"role worker joining", func(c *Config) {
			c.Node.Role = RoleWorker
			c.Join = Join{Addrs: []string{"10.0.0.1:4242"}, Token: "t"}
		}, "", ""},
		{"worker without join", func(c *Config) { c.Node.Role = RoleWorker }, "join.addrs", "required for a worker"},
	})
}

// TestValidateManager checks the validation of the manager's listen and
// advertise addresses.
func TestValidateManager(t *testing.T) {
	checkValidate(t, []validateCase{
		{"listen_addr no port", func(c *Config) { c.Manager.ListenAddr = "0.0.0.0" }, "manager.listen_addr", `must be host:port, got "0.0.0.0"`},
		{"listen_addr bad port", func(c *Config) { c.Manager.ListenAddr = "0.0.0.0:70000" }, "manager.listen_addr", `port must be between 0 and 65535, got "70000"`},
		{"listen_addr named port", func(c *Config) { c.Manager.ListenAddr = ":http" }, "manager.listen_addr", `got "http"`},
		{"listen_addr bad host", func(c *Config) { c.Manager.ListenAddr = "a b:4242" }, "manager.listen_addr", `host must be an IP address or DNS name, got "a b"`},
		{"listen_addr empty host", func(c *Config) { c.Manager.ListenAddr = ":4242" }, "", ""},
		{"listen_addr ipv6", func(c *Config) { c.Manager.ListenAddr = "[::]:4242" }, "", ""},
		{"listen_addr port 0", func(c *Config) {
			c.Manager.ListenAddr = "127.0.0.1:0"
			c.Manager.RaftListenAddr = "127.0.0.1:0"
		}, "", ""},
		{"advertise_addr host only", func(c *Config) { c.Manager.AdvertiseAddr = "10.0.0.5" }, "", ""},
		{"advertise_addr host:port", func(c *Config) { c.Manager.AdvertiseAddr = "mgr1.example:4242" }, "", ""},
		{"advertise_addr unspecified", func(c *Config) { c.Manager.AdvertiseAddr = "0.0.0.0:4242" }, "manager.advertise_addr", `address other nodes can dial, got "0.0.0.0"`},
		{"advertise_addr port 0", func(c *Config) { c.Manager.AdvertiseAddr = "10.0.0.5:0" }, "manager.advertise_addr", `port must be between 1 and 65535, got "0"`},
		{"advertise_addr empty port", func(c *Config) { c.Manager.AdvertiseAddr = "10.0.0.5:" }, "manager.advertise_addr", "port must be between 1 and 65535"},
		{"advertise_addr garbage", func(c *Config) { c.Manager.AdvertiseAddr = "a:b:c" }, "manager.advertise_addr", `must be host or host:port, got "a:b:c"`},
		{"raft_advertise_addr bad", func(c *Config) { c.Manager.RaftAdvertiseAddr = "::" }, "manager.raft_advertise_addr", "address other nodes can dial"},
		{"raft_listen_addr bad", func(c *Config) { c.Manager.RaftListenAddr = "4243" }, "manager.raft_listen_addr", "must be host:port"},
		{"raft port clashes with api", func(c *Config) { c.Manager.RaftListenAddr = "10.0.0.5:4242" }, "manager.raft_listen_addr", "must not use the port of manager.listen_addr"},
		{"metrics port clashes", func(c *Config) { c.Metrics.ListenAddr = "127.0.0.1:4243" }, "metrics.listen_addr", "must not use the port of manager.raft_listen_addr"},
	})
}

// TestValidateGossip checks the validation of the gossip listen and
// advertise addresses.
func TestValidateGossip(t *testing.T) {
	checkValidate(t, []validateCase{
		{"gossip port 0", func(c *Config) { c.Gossip.ListenAddr = "127.0.0.1:0" }, "", ""},
		{"gossip empty host", func(c *Config) { c.Gossip.ListenAddr = ":7946" }, "", ""},
		{"gossip listen no port", func(c *Config) { c.Gossip.ListenAddr = "0.0.0.0" }, "gossip.listen_addr", `must be ip:port, got "0.0.0.0"`},
		{"gossip listen name", func(c *Config) { c.Gossip.ListenAddr = "node1.example:7946" }, "gossip.listen_addr", `host must be an IP address (or empty for every interface), got "node1.example"`},
		{"gossip listen bad port", func(c *Config) { c.Gossip.ListenAddr = "0.0.0.0:70000" }, "gossip.listen_addr", `port must be between 0 and 65535, got "70000"`},
		{"gossip advertise ip", func(c *Config) { c.Gossip.AdvertiseAddr = "192.168.1.12" }, "", ""},
		{"gossip advertise with port", func(c *Config) { c.Gossip.AdvertiseAddr = "192.168.1.12:7946" }, "gossip.advertise_addr", `must be an IP address without a port, got "192.168.1.12:7946"`},
		{"gossip advertise name", func(c *Config) { c.Gossip.AdvertiseAddr = "node1.example" }, "gossip.advertise_addr", "must be an IP address"},
		{"gossip advertise unspecified", func(c *Config) { c.Gossip.AdvertiseAddr = "0.0.0.0" }, "gossip.advertise_addr", `must be an address other nodes can reach, got "0.0.0.0"`},
		{"nftables table with a space", func(c *Config) { c.Services.NftablesTable = "my table" }, "services.nftables_table", `must be 1 to 64 letters, digits, '_' and '-', starting with a letter, got "my table"`},
		{"nftables table empty", func(c *Config) { c.Services.NftablesTable = "" }, "services.nftables_table", "must be 1 to 64"},
		{"gossip port clashes with api", func(c *Config) { c.Gossip.ListenAddr = "0.0.0.0:4242" }, "gossip.listen_addr", "must not use the port of manager.listen_addr"},
		{"worker gossip port clashes with metrics", func(c *Config) {
			c.Node.Role = RoleWorker
			c.Join = Join{Addrs: []string{"10.0.0.1:4242"}, Token: "t"}
			c.Gossip.ListenAddr = "0.0.0.0:9242"
		}, "gossip.listen_addr", "must not use the port of metrics.listen_addr"},
		{"worker binds metrics only", func(c *Config) {
			c.Node.Role = RoleWorker
			c.Join = Join{Addrs: []string{"10.0.0.1:4242"}, Token: "t"}
			c.Metrics.ListenAddr = "0.0.0.0:4242"
		}, "", ""},
		{"same port on other hosts", func(c *Config) {
			c.Manager.ListenAddr = "10.0.0.5:4242"
			c.Manager.RaftListenAddr = "10.0.0.6:4242"
		}, "", ""},
		{"control_socket relative", func(c *Config) { c.Manager.ControlSocket = "control.sock" }, "manager.control_socket", "must be an absolute path"},
		{"control_socket too long", func(c *Config) { c.Manager.ControlSocket = "/" + strings.Repeat("s", 107) }, "manager.control_socket", "must be at most 107 bytes (a unix socket path), got 108"},
	})
}

// TestValidateMetrics checks the validation of the metrics listener and
// the dashboard.
func TestValidateMetrics(t *testing.T) {
	checkValidate(t, []validateCase{
		{"metrics off", func(c *Config) { c.Metrics.ListenAddr = "" }, "", ""},
		{"metrics bad", func(c *Config) { c.Metrics.ListenAddr = "localhost" }, "metrics.listen_addr", `must be host:port, got "localhost"`},
		{"dashboard token file", func(c *Config) { c.Metrics.DashboardTokenFile = "/etc/shoal/dashboard.token" }, "", ""},
		{"dashboard token file relative", func(c *Config) { c.Metrics.DashboardTokenFile = "dashboard.token" }, "metrics.dashboard_token_file", "must be an absolute path"},
	})
}

// TestValidateRaft checks the validation of Raft's timeouts.
func TestValidateRaft(t *testing.T) {
	checkValidate(t, []validateCase{
		{"heartbeat too short", func(c *Config) { c.Raft.HeartbeatTimeout = ms(5); c.Raft.LeaderLeaseTimeout = ms(5) }, "raft.heartbeat_timeout", "must be between 10ms and 1m, got 5ms"},
		{"heartbeat too long", func(c *Config) {
			c.Raft.HeartbeatTimeout = Duration{2 * time.Minute}
			c.Raft.ElectionTimeout = Duration{2 * time.Minute}
		}, "raft.heartbeat_timeout", "must be between 10ms and 1m, got 2m"},
		{"heartbeat at floor", func(c *Config) {
			c.Raft.HeartbeatTimeout, c.Raft.ElectionTimeout, c.Raft.LeaderLeaseTimeout = ms(10), ms(10), ms(10)
		}, "", ""},
		{"election too short", func(c *Config) { c.Raft.ElectionTimeout = ms(9) }, "raft.election_timeout", "must be between 10ms and 1m, got 9ms"},
		{"election below heartbeat", func(c *Config) { c.Raft.ElectionTimeout = ms(200) }, "raft.election_timeout", "must be at least raft.heartbeat_timeout (300ms), got 200ms"},
		{"lease too short", func(c *Config) { c.Raft.LeaderLeaseTimeout = ms(1) }, "raft.leader_lease_timeout", "must be between 10ms and 1m, got 1ms"},
		{"lease above heartbeat", func(c *Config) { c.Raft.LeaderLeaseTimeout = ms(600) }, "raft.leader_lease_timeout", "must be at most raft.heartbeat_timeout (300ms), got 600ms"},
		{"commit too short", func(c *Config) { c.Raft.CommitTimeout = Duration{500 * time.Microsecond} }, "raft.commit_timeout", "must be between 1ms and 1s, got 500µs"},
		{"commit too long", func(c *Config) { c.Raft.CommitTimeout = Duration{2 * time.Second} }, "raft.commit_timeout", "must be between 1ms and 1s, got 2s"},
		{"commit negative", func(c *Config) { c.Raft.CommitTimeout = ms(-1) }, "raft.commit_timeout", "got -1ms"},
		{"snapshot threshold 0", func(c *Config) { c.Raft.SnapshotThreshold = 0 }, "raft.snapshot_threshold", "must be at least 1, got 0"},
		{"snapshot interval short", func(c *Config) { c.Raft.SnapshotInterval = ms(50) }, "raft.snapshot_interval", "must be between 100ms and 24h, got 50ms"},
		{"snapshot interval long", func(c *Config) { c.Raft.SnapshotInterval = Duration{25 * time.Hour} }, "raft.snapshot_interval", "must be between 100ms and 24h, got 25h"},
		{"trailing logs negative", func(c *Config) { c.Raft.TrailingLogs = -1 }, "raft.trailing_logs", "must be at least 0, got -1"},
		{"trailing logs 0", func(c *Config) { c.Raft.TrailingLogs = 0 }, "", ""},
		{"max append 0", func(c *Config) { c.Raft.MaxAppendEntries = 0 }, "raft.max_append_entries", "must be between 1 and 1024, got 0"},
		{"max append too many", func(c *Config) { c.Raft.MaxAppendEntries = 1025 }, "raft.max_append_entries", "must be between 1 and 1024, got 1025"},
	})
}

// TestValidateJoin checks the validation of the addresses and token a node
// joins with.
func TestValidateJoin(t *testing.T) {
	checkValidate(t, []validateCase{
		{"join ok", func(c *Config) { c.Join = Join{Addrs: []string{"10.0.0.1:4242", "[fd00::1]:4242"}, Token: "tok"} }, "", ""},
		{"join without token", func(c *Config) { c.Join.Addrs = []string{"10.0.0.1:4242"} }, "join.token", "required to join"},
		{"token without addrs", func(c *Config) { c.Join.Token = "tok" }, "join.addrs", "required with join.token"},
		{"token with space", func(c *Config) { c.Join = Join{Addrs: []string{"10.0.0.1:4242"}, Token: "tok "} }, "join.token", "must not contain spaces"},
		{"join addr without port", func(c *Config) { c.Join = Join{Addrs: []string{"10.0.0.1"}, Token: "t"} }, "join.addrs[0]", `must be host:port, got "10.0.0.1"`},
		{"join addr port 0", func(c *Config) { c.Join = Join{Addrs: []string{"a:1", "b:0"}, Token: "t"} }, "join.addrs[1]", `port must be between 1 and 65535, got "0"`},
		{"join addr unspecified", func(c *Config) { c.Join = Join{Addrs: []string{"0.0.0.0:4242"}, Token: "t"} }, "join.addrs[0]", `host must be a manager's address or DNS name, got "0.0.0.0"`},
		{"join addr empty host", func(c *Config) { c.Join = Join{Addrs: []string{":4242"}, Token: "t"} }, "join.addrs[0]", `got ""`},
	})
}

// TestValidateCluster checks the validation of the cluster's heartbeat
// period, certificate expiry and task history.
func TestValidateCluster(t *testing.T) {
	checkValidate(t, []validateCase{
		{"heartbeat period short", func(c *Config) { c.Cluster.HeartbeatPeriod = ms(999) }, "cluster.heartbeat_period", "must be between 1s and 5m, got 999ms"},
		{"heartbeat period long", func(c *Config) { c.Cluster.HeartbeatPeriod = Duration{6 * time.Minute} }, "cluster.heartbeat_period", "must be between 1s and 5m, got 6m"},
		{"cert expiry short", func(c *Config) { c.Cluster.NodeCertExpiry = Duration{59 * time.Minute} }, "cluster.node_cert_expiry", "must be between 1h and 87600h, got 59m"},
		{"cert expiry long", func(c *Config) { c.Cluster.NodeCertExpiry = Duration{87601 * time.Hour} }, "cluster.node_cert_expiry", "must be between 1h and 87600h, got 87601h"},
		{"history negative", func(c *Config) { c.Cluster.TaskHistoryRetention = -1 }, "cluster.task_history_retention", "must be between 0 and 1000, got -1"},
		{"history too many", func(c *Config) { c.Cluster.TaskHistoryRetention = 1001 }, "cluster.task_history_retention", "must be between 0 and 1000, got 1001"},
		{"history 0", func(c *Config) { c.Cluster.TaskHistoryRetention = 0 }, "", ""},
	})
}

// TestValidateLog checks the validation of the log level and format.
func TestValidateLog(t *testing.T) {
	checkValidate(t, []validateCase{
		{"log level", func(c *Config) { c.Log.Level = "INFO" }, "log.level", `must be one of "debug", "info", "warn", "error", got "INFO"`},
		{"log format", func(c *Config) { c.Log.Format = "logfmt" }, "log.format", `must be one of "text", "json", got "logfmt"`},
	})
}

// TestValidatePlugins checks the validation of the plugins and their
// paths.
func TestValidatePlugins(t *testing.T) {
	checkValidate(t, []validateCase{
		{"plugins known kinds", func(c *Config) {
			c.Plugins[KindScheduler] = Plugin{Path: "/opt/sched"}
			c.Plugins[KindIPAM] = Plugin{}
			c.Plugins[KindExecutor] = Plugin{Config: Opaque("x = 1\n")}
		}, "", ""},
		{"plugin unknown kind", func(c *Config) { c.Plugins["storage"] = Plugin{} }, "plugins.storage", `unknown plugin kind "storage"; kinds are "scheduler", "ipam", "executor"`},
		{"plugin kind quoted", func(c *Config) { c.Plugins["a.b"] = Plugin{} }, `plugins."a.b"`, `unknown plugin kind "a.b"`},
		{"plugin relative path", func(c *Config) { c.Plugins[KindIPAM] = Plugin{Path: "bin/ipam"} }, "plugins.ipam.path", `must be an absolute path, got "bin/ipam"`},
		{"simulated executor", func(c *Config) { c.Plugins[KindExecutor] = Plugin{Path: SimulatedExecutor} }, "", ""},
		{"simulated is for executors", func(c *Config) { c.Plugins[KindScheduler] = Plugin{Path: SimulatedExecutor} }, "plugins.scheduler.path", `must be an absolute path, got "simulated"`},
		{"executor relative path", func(c *Config) { c.Plugins[KindExecutor] = Plugin{Path: "executor"} }, "plugins.executor.path", `must be an absolute path, "simulated" or "none", got "executor"`},
		{"containerd relative socket", func(c *Config) { c.Containerd.Address = "containerd.sock" }, "containerd.address", `must be an absolute path to containerd's socket, got "containerd.sock"`},
		{"containerd socket", func(c *Config) { c.Containerd.Address = "/run/containerd/containerd.sock" }, "", ""},
		{"no executor", func(c *Config) { c.Plugins[KindExecutor] = Plugin{Path: NoExecutor} }, "", ""},
		{"none is for executors", func(c *Config) { c.Plugins[KindIPAM] = Plugin{Path: NoExecutor} }, "plugins.ipam.path", `must be an absolute path, got "none"`},
	})
}

func TestValidateZeroValueNamesEverything(t *testing.T) {
	var c Config
	err := c.Validate()
	var fe sdk.FieldErrors
	if !errors.As(err, &fe) {
		t.Fatalf("Config{}.Validate() = %v, want sdk.FieldErrors", err)
	}
	for _, field := range []string{"version", "node.data_dir", "node.role", "manager.listen_addr", "raft.heartbeat_timeout", "cluster.heartbeat_period", "log.level"} {
		if !hasField(fe, field) {
			t.Errorf("Config{}.Validate() = %v, want %s among the fields", err, field)
		}
	}
}
