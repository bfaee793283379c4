package config

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/BurntSushi/toml"
	"github.com/shoalhq/shoal/sdk"
)

// The bounds Validate enforces. They keep values inside what the parts
// accept and away from settings that only look sensible.
const (
	// minRaftTimeout: below 10ms a busy manager misses heartbeats and
	// elections churn, even on a LAN.
	minRaftTimeout = 10 * time.Millisecond
	// maxRaftTimeout: beyond a minute a dead leader stalls the cluster for
	// longer than any operator would wait.
	maxRaftTimeout = time.Minute
	// minCommitTimeout is hashicorp/raft's own floor; lower values trade CPU
	// for commit latency, which is the operator's call.
	minCommitTimeout = time.Millisecond
	maxCommitTimeout = time.Second
	// minSnapshotInterval and maxSnapshotInterval bound a check that is
	// cheap (it compares counters) but must run often enough that the log
	// stays near snapshot_threshold.
	minSnapshotInterval = 100 * time.Millisecond
	maxSnapshotInterval = 24 * time.Hour
	// maxAppendEntries is hashicorp/raft's own limit.
	maxAppendEntries = 1024

	// minHeartbeatPeriod is the cluster object's floor: faster pings cost
	// the leader more than they gain in failure detection.
	minHeartbeatPeriod = time.Second
	// maxHeartbeatPeriod: a down node is noticed after a few periods; beyond
	// 5m its tasks would wait too long to be rescheduled.
	maxHeartbeatPeriod = 5 * time.Minute
	// minNodeCertExpiry is the cluster object's floor: nodes renew at half
	// the lifetime and need time to reach a manager.
	minNodeCertExpiry = time.Hour
	// maxNodeCertExpiry (10 years) only catches typos; long lifetimes defeat
	// rotation.
	maxNodeCertExpiry = 10 * 365 * 24 * time.Hour
	// maxTaskHistory bounds what the store keeps per service slot.
	maxTaskHistory = 1000

	// maxSocketPath is sun_path (108 bytes on Linux) minus its NUL.
	maxSocketPath = 107
)

var (
	roles   = []Role{RoleManager, RoleWorker}
	levels  = []string{LevelDebug, LevelInfo, LevelWarn, LevelError}
	formats = []string{FormatText, FormatJSON}
)

// Validate checks every field and returns sdk.FieldErrors naming each bad
// field by its TOML path, or nil.
func (c *Config) Validate() error {
	var fe sdk.FieldErrors
	if c.Version != Version {
		fe.Add("version", "must be %d, got %d", Version, c.Version)
	}
	c.validateNode(&fe)
	c.validateManager(&fe)
	c.validateMetrics(&fe)
	if a := c.Containerd.Address; a != "" && !filepath.IsAbs(a) {
		fe.Add("containerd.address", "must be an absolute path to containerd's socket, got %q", a)
	}
	c.validateGossip(&fe)
	if t := c.Services.NftablesTable; !nftTableRE.MatchString(t) {
		fe.Add("services.nftables_table", "must be 1 to 64 letters, digits, '_' and '-', starting with a letter, got %q", t)
	}
	c.validatePorts(&fe)
	c.validateRaft(&fe)
	c.validateJoin(&fe)
	c.validateCluster(&fe)
	c.validateLog(&fe)
	c.validatePlugins(&fe)
	return fe.Err()
}

func (c *Config) validateNode(fe *sdk.FieldErrors) {
	n := c.Node
	if h := n.Hostname; h != "" && (len(h) > 253 || strings.IndexFunc(h, notPrintableOrSpace) >= 0) {
		fe.Add("node.hostname", "must be at most 253 printable characters without spaces, got %q", h)
	}
	absPath(fe, "node.data_dir", n.DataDir)
	if !slices.Contains(roles, n.Role) {
		fe.Add("node.role", "must be %q or %q, got %q", RoleManager, RoleWorker, n.Role)
	}
}

func (c *Config) validateManager(fe *sdk.FieldErrors) {
	m := c.Manager
	checkListenAddr(fe, "manager.listen_addr", m.ListenAddr)
	checkAdvertiseAddr(fe, "manager.advertise_addr", m.AdvertiseAddr)
	checkListenAddr(fe, "manager.raft_listen_addr", m.RaftListenAddr)
	checkAdvertiseAddr(fe, "manager.raft_advertise_addr", m.RaftAdvertiseAddr)
	if absPath(fe, "manager.control_socket", m.ControlSocket) && len(m.ControlSocket) > maxSocketPath {
		fe.Add("manager.control_socket", "must be at most %d bytes (a unix socket path), got %d", maxSocketPath, len(m.ControlSocket))
	}
}

func (c *Config) validateMetrics(fe *sdk.FieldErrors) {
	if c.Metrics.ListenAddr != "" {
		checkListenAddr(fe, "metrics.listen_addr", c.Metrics.ListenAddr)
	}
	if c.Metrics.DashboardTokenFile != "" {
		absPath(fe, "metrics.dashboard_token_file", c.Metrics.DashboardTokenFile)
	}
}

// nftTableRE is what services.nftables_table may be: a name nft(8) takes
// without quoting, well within the kernel's 256 bytes.
var nftTableRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,63}$`)

// validateGossip checks [gossip]: memberlist binds and advertises IP
// addresses, not names, and the advertised one is a route's next hop.
func (c *Config) validateGossip(fe *sdk.FieldErrors) {
	g := c.Gossip
	host, port, err := net.SplitHostPort(g.ListenAddr)
	if err != nil {
		fe.Add("gossip.listen_addr", "must be ip:port, got %q", g.ListenAddr)
	} else {
		if host != "" && net.ParseIP(host) == nil {
			fe.Add("gossip.listen_addr", "host must be an IP address (or empty for every interface), got %q", host)
		}
		if _, err := parsePort(port); err != nil {
			fe.Add("gossip.listen_addr", "port must be between 0 and 65535, got %q", port)
		}
	}
	if a := g.AdvertiseAddr; a != "" {
		ip := net.ParseIP(a)
		switch {
		case ip == nil:
			fe.Add("gossip.advertise_addr", "must be an IP address without a port, got %q", a)
		case ip.IsUnspecified() || ip.IsMulticast():
			fe.Add("gossip.advertise_addr", "must be an address other nodes can reach, got %q", a)
		}
	}
}

// validatePorts rejects two listeners of this node on one port: they cannot
// both bind. A worker binds only the metrics and gossip listeners. (Gossip
// also binds UDP, which no other listener uses.)
func (c *Config) validatePorts(fe *sdk.FieldErrors) {
	var listeners []struct{ field, addr string }
	if c.Node.Role == RoleManager {
		listeners = append(listeners, []struct{ field, addr string }{
			{"manager.listen_addr", c.Manager.ListenAddr},
			{"manager.raft_listen_addr", c.Manager.RaftListenAddr},
		}...)
	}
	listeners = append(listeners, []struct{ field, addr string }{
		{"metrics.listen_addr", c.Metrics.ListenAddr},
		{"gossip.listen_addr", c.Gossip.ListenAddr},
	}...)
	for i, a := range listeners {
		for _, b := range listeners[:i] {
			if sameListenPort(a.addr, b.addr) {
				fe.Add(a.field, "must not use the port of %s (%s), got %s", b.field, b.addr, a.addr)
			}
		}
	}
}

func (c *Config) validateRaft(fe *sdk.FieldErrors) {
	r := c.Raft
	between(fe, "raft.heartbeat_timeout", r.HeartbeatTimeout.Duration, minRaftTimeout, maxRaftTimeout)
	if between(fe, "raft.election_timeout", r.ElectionTimeout.Duration, minRaftTimeout, maxRaftTimeout) &&
		r.ElectionTimeout.Duration < r.HeartbeatTimeout.Duration {
		fe.Add("raft.election_timeout", "must be at least raft.heartbeat_timeout (%s), got %s",
			FormatDuration(r.HeartbeatTimeout.Duration), FormatDuration(r.ElectionTimeout.Duration))
	}
	if between(fe, "raft.leader_lease_timeout", r.LeaderLeaseTimeout.Duration, minRaftTimeout, maxRaftTimeout) &&
		r.LeaderLeaseTimeout.Duration > r.HeartbeatTimeout.Duration {
		fe.Add("raft.leader_lease_timeout", "must be at most raft.heartbeat_timeout (%s), got %s",
			FormatDuration(r.HeartbeatTimeout.Duration), FormatDuration(r.LeaderLeaseTimeout.Duration))
	}
	between(fe, "raft.commit_timeout", r.CommitTimeout.Duration, minCommitTimeout, maxCommitTimeout)
	if r.SnapshotThreshold < 1 {
		fe.Add("raft.snapshot_threshold", "must be at least 1, got %d", r.SnapshotThreshold)
	}
	between(fe, "raft.snapshot_interval", r.SnapshotInterval.Duration, minSnapshotInterval, maxSnapshotInterval)
	if r.TrailingLogs < 0 {
		fe.Add("raft.trailing_logs", "must be at least 0, got %d", r.TrailingLogs)
	}
	if r.MaxAppendEntries < 1 || r.MaxAppendEntries > maxAppendEntries {
		fe.Add("raft.max_append_entries", "must be between 1 and %d, got %d", maxAppendEntries, r.MaxAppendEntries)
	}
}

func (c *Config) validateJoin(fe *sdk.FieldErrors) {
	j := c.Join
	for i, a := range j.Addrs {
		field := fmt.Sprintf("join.addrs[%d]", i)
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			fe.Add(field, "must be host:port, got %q", a)
			continue
		}
		if !validHost(host) || unspecifiedHost(host) {
			fe.Add(field, "host must be a manager's address or DNS name, got %q", host)
		}
		if p, err := parsePort(port); err != nil || p == 0 {
			fe.Add(field, "port must be between 1 and 65535, got %q", port)
		}
	}
	switch {
	case len(j.Addrs) > 0 && j.Token == "":
		fe.Add("join.token", "required to join the managers in join.addrs; get one with `shoal join-token worker` or `shoal join-token manager`")
	case len(j.Addrs) == 0 && j.Token != "":
		// A token without addresses would bootstrap a second, separate
		// cluster: certainly not what the operator meant.
		fe.Add("join.addrs", "required with join.token: list the managers to join")
	case len(j.Addrs) == 0 && c.Node.Role == RoleWorker:
		fe.Add("join.addrs", "required for a worker: only a manager can bootstrap a new cluster")
	}
	if j.Token != "" && strings.IndexFunc(j.Token, notPrintableOrSpace) >= 0 {
		fe.Add("join.token", "must not contain spaces or control characters")
	}
}

func (c *Config) validateCluster(fe *sdk.FieldErrors) {
	cl := c.Cluster
	between(fe, "cluster.heartbeat_period", cl.HeartbeatPeriod.Duration, minHeartbeatPeriod, maxHeartbeatPeriod)
	between(fe, "cluster.node_cert_expiry", cl.NodeCertExpiry.Duration, minNodeCertExpiry, maxNodeCertExpiry)
	if cl.TaskHistoryRetention < 0 || cl.TaskHistoryRetention > maxTaskHistory {
		fe.Add("cluster.task_history_retention", "must be between 0 and %d, got %d", maxTaskHistory, cl.TaskHistoryRetention)
	}
	if len(cl.BindMountRoots) > 32 {
		fe.Add("cluster.bind_mount_roots", "must hold at most 32 paths, got %d", len(cl.BindMountRoots))
	}
	for i, r := range cl.BindMountRoots {
		if !filepath.IsAbs(r) || filepath.Clean(r) != r || len(r) > 4096 {
			fe.Add(fmt.Sprintf("cluster.bind_mount_roots[%d]", i), "must be a clean absolute path such as /srv, got %q", r)
		}
	}
}

func (c *Config) validateLog(fe *sdk.FieldErrors) {
	if !slices.Contains(levels, c.Log.Level) {
		fe.Add("log.level", "must be one of %s, got %q", quoteList(levels), c.Log.Level)
	}
	if !slices.Contains(formats, c.Log.Format) {
		fe.Add("log.format", "must be one of %s, got %q", quoteList(formats), c.Log.Format)
	}
}

func (c *Config) validatePlugins(fe *sdk.FieldErrors) {
	kinds := make([]string, 0, len(c.Plugins))
	for kind := range c.Plugins {
		kinds = append(kinds, kind)
	}
	slices.Sort(kinds) // errors in a stable order
	for _, kind := range kinds {
		field := toml.Key{"plugins", kind}.String()
		if !slices.Contains(Kinds, kind) {
			fe.Add(field, "unknown plugin kind %q; kinds are %s", kind, quoteList(Kinds))
			continue
		}
		switch p := c.Plugins[kind].Path; {
		case p == "" || filepath.IsAbs(p):
		case kind == KindExecutor && (p == SimulatedExecutor || p == NoExecutor):
		case kind == KindExecutor:
			fe.Add(field+".path", "must be an absolute path, %q or %q, got %q", SimulatedExecutor, NoExecutor, p)
		default:
			fe.Add(field+".path", "must be an absolute path, got %q", p)
		}
	}
}

// SimulatedExecutor, as [plugins.executor] path, runs the node's tasks in
// the agent's memory (kernel/simexec) instead of in an executor plugin:
// nothing runs for real, which lets one machine stand in for many nodes.
const SimulatedExecutor = "simulated"

// NoExecutor, as [plugins.executor] path, gives the node no worker: a
// manager then only manages (it takes no tasks); a worker refuses to start.
const NoExecutor = "none"

// between records field unless lo <= d <= hi, and reports whether it was in
// bounds.
func between(fe *sdk.FieldErrors, field string, d, lo, hi time.Duration) bool {
	if d < lo || d > hi {
		fe.Add(field, "must be between %s and %s, got %s", FormatDuration(lo), FormatDuration(hi), FormatDuration(d))
		return false
	}
	return true
}

// absPath records field unless p is an absolute path, and reports
// whether it was.
func absPath(fe *sdk.FieldErrors, field, p string) bool {
	if !filepath.IsAbs(p) {
		fe.Add(field, "must be an absolute path, got %q", p)
		return false
	}
	return true
}

// checkListenAddr records field unless addr is "host:port" with an IP, a DNS name
// or an empty host, and a port between 0 and 65535 (0 picks a free port,
// useful in tests).
func checkListenAddr(fe *sdk.FieldErrors, field, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		fe.Add(field, "must be host:port, got %q", addr)
		return
	}
	if host != "" && !validHost(host) {
		fe.Add(field, "host must be an IP address or DNS name, got %q", host)
	}
	if _, err := parsePort(port); err != nil {
		fe.Add(field, "port must be between 0 and 65535, got %q", port)
	}
}

// checkAdvertiseAddr records field unless addr is empty, "host" or "host:port"
// with a host other nodes can dial and a port between 1 and 65535.
func checkAdvertiseAddr(fe *sdk.FieldErrors, field, addr string) {
	if addr == "" {
		return
	}
	host, port, err := splitHostOptionalPort(addr)
	if err != nil {
		fe.Add(field, "must be host or host:port, got %q", addr)
		return
	}
	if !validHost(host) || unspecifiedHost(host) {
		fe.Add(field, "host must be an address other nodes can dial, got %q", host)
	}
	if port == "" && strings.HasSuffix(addr, ":") {
		fe.Add(field, "port must be between 1 and 65535, got \"\"")
	} else if port != "" {
		if p, err := parsePort(port); err != nil || p == 0 {
			fe.Add(field, "port must be between 1 and 65535, got %q", port)
		}
	}
}

// sameListenPort reports whether two listen addresses would collide: the
// same non-zero port on the same host, or on any host when either listens
// on every interface.
func sameListenPort(a, b string) bool {
	ah, ap, err := net.SplitHostPort(a)
	if err != nil {
		return false
	}
	bh, bp, err := net.SplitHostPort(b)
	if err != nil || ap != bp || ap == "0" {
		return false
	}
	return ah == bh || unspecifiedHost(ah) || unspecifiedHost(bh)
}

func notPrintableOrSpace(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, ", ")
}
