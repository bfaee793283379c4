// Package config is the node's TOML configuration: what `shoal agent --config
// node.toml` reads before anything else starts.
//
// Load reads a file and Parse decodes it into Default() with
// BurntSushi/toml, strictly: a key the kernel does not know is an error naming
// the key and its line, so a typo never silently falls back to a default.
// Version = 1 is required. Validate checks every field and returns
// sdk.FieldErrors naming each bad field by its TOML path
// ("raft.heartbeat_timeout"), with the allowed bounds in the message. A file
// with several problems (unknown keys, values of the wrong type, malformed
// durations, values out of range) gets them all named in one error.
//
// The tables under [plugins.<kind>.config] are the one exception to
// strictness: they belong to the plugin, so the kernel keeps them as opaque
// TOML (Opaque) and hands them to the plugin, which decodes them strictly
// itself.
//
// Settings that change while the cluster runs (heartbeat period, certificate
// lifetime, task history) live in Raft; the [cluster] table only seeds them
// when a new cluster is bootstrapped. config.example.toml at the repository
// root documents every setting with its default, and a test keeps it equal
// to Default().
package config

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// Version is the only config file version this shoal reads.
const Version = 1

// Config is one node's configuration.
type Config struct {
	// Version is the config file format version. It is required and must be
	// 1, so that a later format change is detected instead of misread.
	// Default: 1.
	Version int `toml:"version"`
	// Node is who this node is and where it keeps its state.
	Node Node `toml:"node"`
	// Manager is the manager's listeners. Ignored on a worker.
	Manager Manager `toml:"manager"`
	// Raft tunes the managers' consensus. Ignored on a worker.
	Raft Raft `toml:"raft"`
	// Join names the cluster to join; leave it empty to bootstrap a new one.
	Join Join `toml:"join"`
	// Cluster seeds the cluster-wide settings of a new cluster.
	Cluster Cluster `toml:"cluster"`
	// Log is the daemon's log output.
	Log Log `toml:"log"`
	// Metrics is the Prometheus and dashboard HTTP endpoint.
	Metrics Metrics `toml:"metrics"`
	// Containerd is the containerd that runs the node's containers.
	Containerd Containerd `toml:"containerd"`
	// Gossip is the worker's part in the gossip between workers.
	Gossip Gossip `toml:"gossip"`
	// Services is how a worker serves its tasks service discovery.
	Services Services `toml:"services"`
	// Plugins chooses the plugin binary of each kind, keyed by kind:
	// "scheduler", "ipam" or "executor". Default: none (an empty map).
	Plugins map[string]Plugin `toml:"plugins"`
}

// Role is what a node runs.
type Role string

// The roles. A manager also runs the worker agent, as in Docker Swarm, so
// one machine is a whole cluster; drain a manager to keep tasks off it.
const (
	RoleManager Role = "manager"
	RoleWorker  Role = "worker"
)

// Node is who this node is and where it keeps its state.
type Node struct {
	// Hostname is the node's name in `shoal node ls`. Empty means the
	// machine's hostname (os.Hostname) at start-up. Default: "".
	Hostname string `toml:"hostname"`
	// DataDir holds the node's state: Raft log and snapshots, certificates,
	// the worker's task database. It must be an absolute path. Default:
	// "/var/lib/shoal".
	DataDir string `toml:"data_dir"`
	// Role is "manager" (manager and worker) or "worker" (worker only).
	// Default: "manager".
	Role Role `toml:"role"`
}

// Name is the node's name: Hostname, or the machine's hostname when empty.
func (n Node) Name() (string, error) {
	if n.Hostname != "" {
		return n.Hostname, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("node name: %w", err)
	}
	return h, nil
}

// Manager is the manager's listeners. Addresses are "host:port"; an empty
// host or 0.0.0.0 listens on every interface.
type Manager struct {
	// ListenAddr is where the gRPC API (control API, worker sessions, CA)
	// listens, over mutual TLS. Default: "0.0.0.0:4242".
	ListenAddr string `toml:"listen_addr"`
	// AdvertiseAddr is the API address other nodes dial, "host:port" or just
	// "host" (the port of listen_addr is used). Empty derives it: the host of
	// listen_addr when it is a specific address, else the machine's first
	// non-loopback IPv4 address, else 127.0.0.1 (see AdvertiseAddr). Set it
	// on machines with several networks. Default: "".
	AdvertiseAddr string `toml:"advertise_addr"`
	// RaftListenAddr is where Raft traffic between managers listens.
	// Default: "0.0.0.0:4243".
	RaftListenAddr string `toml:"raft_listen_addr"`
	// RaftAdvertiseAddr is the Raft address other managers dial, derived like
	// advertise_addr when empty; when only advertise_addr is set, its host is
	// used with the port of raft_listen_addr. Default: "".
	RaftAdvertiseAddr string `toml:"raft_advertise_addr"`
	// ControlSocket is the unix socket the local CLI uses; it is created
	// readable and writable by root only. Default: "/run/shoal/control.sock".
	ControlSocket string `toml:"control_socket"`
}

// AdvertiseAPI is the API address to give other nodes.
func (m Manager) AdvertiseAPI() (string, error) {
	return AdvertiseAddr(m.ListenAddr, m.AdvertiseAddr)
}

// AdvertiseRaft is the Raft address to give other managers:
// raft_advertise_addr, else the host of advertise_addr on the Raft port, else
// derived from raft_listen_addr. An operator who set advertise_addr to pick a
// network expects Raft to use that network too.
func (m Manager) AdvertiseRaft() (string, error) {
	adv := m.RaftAdvertiseAddr
	if adv == "" && m.AdvertiseAddr != "" {
		host, _, err := splitHostOptionalPort(m.AdvertiseAddr)
		if err != nil {
			return "", err
		}
		adv = bracketIPv6(host)
	}
	return AdvertiseAddr(m.RaftListenAddr, adv)
}

// Raft tunes the managers' consensus (hashicorp/raft). The defaults suit
// managers on one LAN; raise the timeouts together across a WAN.
type Raft struct {
	// HeartbeatTimeout is how long a follower waits without contact from the
	// leader before it starts an election. Default: "300ms" (sub-second failover on a LAN; see config.example.toml).
	HeartbeatTimeout Duration `toml:"heartbeat_timeout"`
	// ElectionTimeout is how long a candidate waits for votes before it
	// starts a new election; at least heartbeat_timeout. Default: "500ms".
	ElectionTimeout Duration `toml:"election_timeout"`
	// LeaderLeaseTimeout is how long a leader stays leader without reaching
	// a quorum; at most heartbeat_timeout. Default: "250ms".
	LeaderLeaseTimeout Duration `toml:"leader_lease_timeout"`
	// CommitTimeout is how long the leader waits, with nothing to send,
	// before it tells followers the new commit index. Default: "10ms".
	CommitTimeout Duration `toml:"commit_timeout"`
	// SnapshotThreshold is how many log entries are written between
	// snapshots. Default: 8192.
	SnapshotThreshold int `toml:"snapshot_threshold"`
	// SnapshotInterval is how often the threshold is checked. Default: "30s".
	SnapshotInterval Duration `toml:"snapshot_interval"`
	// TrailingLogs is how many entries are kept after a snapshot, so a
	// follower that lags a little catches up from the log instead of a whole
	// snapshot. Default: 10240.
	TrailingLogs int `toml:"trailing_logs"`
	// MaxAppendEntries is the most entries sent in one AppendEntries request.
	// Default: 256.
	MaxAppendEntries int `toml:"max_append_entries"`
}

// Join names the cluster to join.
type Join struct {
	// Addrs are manager API addresses, "host:port", tried in order. Empty
	// means bootstrap a new cluster (managers only). Default: [].
	Addrs []string `toml:"addrs"`
	// Token is the join token from `shoal join-token worker|manager`; it
	// picks the role the cluster grants and pins its CA. Required with
	// addrs. Default: "".
	Token string `toml:"token"`
}

// Cluster holds the cluster-wide settings a new cluster starts with. They
// are read only when this node bootstraps the cluster; afterwards they live
// in Raft and change through the control API.
type Cluster struct {
	// HeartbeatPeriod is how often workers ping the leader. Default: "5s".
	HeartbeatPeriod Duration `toml:"heartbeat_period"`
	// NodeCertExpiry is the lifetime of node certificates; nodes renew at
	// about half of it. Default: "2160h" (90 days).
	NodeCertExpiry Duration `toml:"node_cert_expiry"`
	// TaskHistoryRetention is how many dead tasks per service slot are kept
	// for `shoal service ps`. Default: 5.
	TaskHistoryRetention int `toml:"task_history_retention"`
	// BindMountRoots are the node paths under which services' bind mount
	// sources must lie, e.g. ["/srv"]. Default: [] (any absolute path).
	BindMountRoots []string `toml:"bind_mount_roots"`
}

// The log levels and formats.
const (
	LevelDebug = "debug"
	LevelInfo  = "info"
	LevelWarn  = "warn"
	LevelError = "error"

	FormatText = "text"
	FormatJSON = "json"
)

// Log is the daemon's log output, written to stderr.
type Log struct {
	// Level is the least severe level written: "debug", "info", "warn" or
	// "error". Default: "info".
	Level string `toml:"level"`
	// Format is "text" (logfmt-like, for people) or "json" (for log
	// collectors). Default: "text".
	Format string `toml:"format"`
}

// SlogLevel is Level as a slog.Level; an unknown level is Info.
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case LevelDebug:
		return slog.LevelDebug
	case LevelWarn:
		return slog.LevelWarn
	case LevelError:
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Handler returns a slog.Handler writing to w in Format at Level.
func (l Log) Handler(w io.Writer) slog.Handler {
	opts := &slog.HandlerOptions{Level: l.SlogLevel()}
	if l.Format == FormatJSON {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// Metrics is the HTTP endpoint serving Prometheus metrics (/metrics) and the
// web dashboard.
type Metrics struct {
	// ListenAddr is "host:port", or "" to turn the endpoint off. It is plain
	// HTTP without authentication, so the default listens on loopback only;
	// expose it deliberately. Default: "127.0.0.1:9242".
	ListenAddr string `toml:"listen_addr"`
	// DashboardTokenFile is an absolute path to a file holding the web
	// dashboard's admin token (at least 32 characters, e.g. `openssl rand
	// -hex 16`; the file mode must give others no access). With it, a
	// client that presents the token, from any address, may read the
	// dashboard and scale services, update their image and drain nodes;
	// without it, the dashboard serves loopback clients only, read only.
	// The token travels in clear over this plain-HTTP listener: serve a
	// non-loopback dashboard through a TLS proxy or an SSH tunnel.
	// Default: "" (no token). Managers only.
	DashboardTokenFile string `toml:"dashboard_token_file"`
}

// Containerd is the containerd the node's executor runs containers with.
type Containerd struct {
	// Address is the socket of a containerd the operator runs, an absolute
	// path. Empty: the node starts and supervises its own containerd (its
	// own config with CRI disabled, root, state and socket under
	// data_dir/containerd) and stops it when the node stops; its
	// containers keep running across restarts of either. Default: "".
	Address string `toml:"address"`
}

// Gossip is the worker's member of the gossip between workers
// (kernel/gossip): the addresses of the node's tasks and its slices of the
// cluster's networks, from which every node routes to the others' tasks. A
// node whose executor is "simulated" or "none" takes no part. The managers
// tell each worker a few others to join and the cluster's key, which
// encrypts the gossip.
type Gossip struct {
	// ListenAddr is where gossip listens, UDP and TCP, "ip:port"; an empty
	// or 0.0.0.0 host listens on every interface, port 0 picks a free one.
	// Default: "0.0.0.0:7946".
	ListenAddr string `toml:"listen_addr"`
	// AdvertiseAddr is the IP address other workers reach this one at, and
	// the next hop they route this node's slices of the networks to: it
	// must be on a link the nodes share. Empty derives it like
	// manager.advertise_addr: the host of listen_addr when it is a specific
	// address, else the machine's first non-loopback IPv4 address, else
	// 127.0.0.1. Default: "".
	AdvertiseAddr string `toml:"advertise_addr"`
}

// Services is how a worker that runs real tasks serves them service
// discovery (kernel/node): DNS on its gateway of each network, and the
// cluster's VIPs and routing-mesh ports in one nftables table.
type Services struct {
	// NftablesTable is the nftables table (family ip) the node keeps its
	// VIPs and mesh ports in; each change replaces its whole content, and
	// it stays when the node stops, so that its tasks stay reachable
	// across an agent restart. Two nodes in one network namespace (tests
	// on one machine) need one each. Default: "shoal".
	NftablesTable string `toml:"nftables_table"`
}

// AdvertiseHost is the IP address to give the other workers.
func (g Gossip) AdvertiseHost() (string, error) {
	return advertiseHost(g.ListenAddr, g.AdvertiseAddr, interfaceIPs)
}

// The plugin kinds.
const (
	KindScheduler = "scheduler"
	KindIPAM      = "ipam"
	KindExecutor  = "executor"
)

// Kinds are the plugin kinds, in a fixed order.
var Kinds = []string{KindScheduler, KindIPAM, KindExecutor}

// Plugin is one [plugins.<kind>] table.
type Plugin struct {
	// Path is the plugin binary, an absolute path. Empty means the plugin of
	// this kind that ships with shoal. Default: "".
	Path string `toml:"path"`
	// Config is the [plugins.<kind>.config] table, opaque to the kernel and
	// decoded strictly by the plugin. Default: empty.
	Config Opaque `toml:"config"`
}

// Default returns the configuration every setting falls back to. Each call
// returns fresh maps and slices.
func Default() Config {
	return Config{
		Version: Version,
		Node: Node{
			Hostname: "",
			DataDir:  "/var/lib/shoal",
			Role:     RoleManager,
		},
		Manager: Manager{
			ListenAddr:        "0.0.0.0:4242",
			AdvertiseAddr:     "",
			RaftListenAddr:    "0.0.0.0:4243",
			RaftAdvertiseAddr: "",
			ControlSocket:     "/run/shoal/control.sock",
		},
		Raft: Raft{
			HeartbeatTimeout:   Duration{300 * time.Millisecond},
			ElectionTimeout:    Duration{500 * time.Millisecond},
			LeaderLeaseTimeout: Duration{250 * time.Millisecond},
			CommitTimeout:      Duration{10 * time.Millisecond},
			SnapshotThreshold:  8192,
			SnapshotInterval:   Duration{30 * time.Second},
			TrailingLogs:       10240,
			MaxAppendEntries:   256,
		},
		// An empty, non-nil slice: decoding `addrs = []` keeps it as is, so a
		// file spelling out the default equals Default().
		Join: Join{Addrs: []string{}, Token: ""},
		Cluster: Cluster{
			HeartbeatPeriod:      Duration{5 * time.Second},
			NodeCertExpiry:       Duration{2160 * time.Hour},
			TaskHistoryRetention: 5,
			BindMountRoots:       []string{},
		},
		Log:        Log{Level: LevelInfo, Format: FormatText},
		Metrics:    Metrics{ListenAddr: "127.0.0.1:9242"},
		Containerd: Containerd{Address: ""},
		Gossip:     Gossip{ListenAddr: "0.0.0.0:7946", AdvertiseAddr: ""},
		Services:   Services{NftablesTable: "shoal"},
		Plugins:    map[string]Plugin{},
	}
}

// Role is the node's role.
func (c Config) Role() Role { return c.Node.Role }

// IsManager reports whether the node runs a manager.
func (c Config) IsManager() bool { return c.Node.Role == RoleManager }

// Bootstrap reports whether the node creates a new cluster rather than
// joining one: a manager with no join addresses.
func (c Config) Bootstrap() bool { return c.IsManager() && len(c.Join.Addrs) == 0 }

// RaftDir is where the Raft log and snapshots live.
func (c Config) RaftDir() string { return filepath.Join(c.Node.DataDir, "raft") }

// CertDir is where the node's key, certificate and the cluster's root
// certificate live.
func (c Config) CertDir() string { return filepath.Join(c.Node.DataDir, "certificates") }

// WorkerDir is where the worker agent keeps its task database.
func (c Config) WorkerDir() string { return filepath.Join(c.Node.DataDir, "worker") }

// PluginDir is the private state directory of the plugin of kind.
func (c Config) PluginDir(kind string) string {
	return filepath.Join(c.Node.DataDir, "plugins", kind)
}
