package controlapi

import (
	"github.com/shoalhq/shoal/kernel/gossip"
	"math"
	"time"
)

// Limits on what the control API accepts.
//
// Every string and list of a spec is bounded, and so is the whole serialized
// spec. A spec is not just a request: it is replicated to every manager, kept
// in memory, written to the Raft log and to every snapshot, and a service's
// task spec is copied into each of its tasks. Unbounded, one request makes
// every manager slow for everyone: a service with 100,000 env entries grew a
// manager's Raft directory to 443 MB, and an unrelated 2-replica service then
// took 16 s to run instead of 0.2 s.
//
// Each limit is far above what real workloads use and comparable with what
// Docker and Kubernetes accept. Where Linux sets a hard limit (a string
// passed to execve, a path), the limit is Linux's: beyond it the task could
// never start, so refusing it at once is kinder than a task failing forever.
// Lengths are in bytes (of UTF-8), which for ASCII are characters.
//
// The per-task network limits, maxNetworksPerTask and maxAliases, are in
// network.go. README.md lists every limit (its "Limits" section): keep it in
// step with this file.
const (
	// maxSpecBytes bounds a whole spec as serialized (unknown fields
	// included), whatever its fields' own limits allow. It is the size of a
	// Kubernetes ConfigMap, below etcd's 1.5 MiB request limit, and a
	// quarter of gRPC's default 4 MiB message limit (grpc-go refuses a
	// larger request with ResourceExhausted before it is decoded). A
	// service keeps its spec and previous one, and copies its task spec into
	// every task: a spec near this limit is already costly at scale.
	maxSpecBytes = 1 << 20

	// maxNameLen is the length of a DNS label: service and node names become
	// host names (of tasks, in service discovery), which allow no more.
	// Network targets (a name, or an ID of 25 characters) are bounded by it
	// too.
	maxNameLen = 63
	// maxLabels bounds the labels of one object. Docker sets no bound and
	// Kubernetes caps all annotations of an object at 256 KiB; 128 labels of
	// the longest key and value (about 540 KB) still fit in maxSpecBytes,
	// and constraints and `ls` filters look labels up one by one.
	maxLabels = 128
	// maxLabelKeyLen keeps keys readable in `ls` tables and bounded in
	// indexes; reverse-DNS keys ("com.example.team.rack") fit easily.
	maxLabelKeyLen = 128
	// maxLabelValueLen lets a label hold a short document (a URL, a JSON
	// blob) while keeping a whole spec far below the gRPC message limit.
	maxLabelValueLen = 4096

	// maxReplicas bounds a replicated service. The orchestrator writes a
	// service's tasks in batched Raft entries and keeps them all in memory;
	// beyond this a typo (an extra zero or two) would swamp the cluster.
	maxReplicas = 100000
	// maxImageLen bounds the whole image reference: a 255-character
	// repository name, a 128-character tag and a 71-character digest fit.
	maxImageLen = 512
	// maxImageNameLen is the registry protocol's limit on a repository name,
	// registry host included (distribution/reference's NameTotalLengthMax).
	maxImageNameLen = 255
	// maxArgs bounds command and args, each. Linux bounds them only by
	// their total size (ARG_MAX, a quarter of the stack limit: 2 MiB by
	// default); 1,000 words is more than any hand-written command line, and
	// longer lists (of files, say) belong in a file the task reads.
	maxArgs = 1000
	// maxEnv bounds env. Kubernetes injects a few variables per service of
	// a namespace (service links), which reaches hundreds in big ones;
	// 1,000 leaves room for that, and the 100,000 that swamped a cluster
	// are refused.
	maxEnv = 1000
	// maxArgLen bounds one entry of command, args or env: Linux's
	// MAX_ARG_STRLEN (32 pages, 131072 bytes) less the terminating NUL.
	// execve refuses a longer string with E2BIG, so the task could never
	// start.
	maxArgLen = 32*4096 - 1
	// maxPathLen bounds dir and mount paths: Linux's PATH_MAX (4096 bytes)
	// less the terminating NUL. A system call refuses a longer path with
	// ENAMETOOLONG.
	maxPathLen = 4096 - 1
	// maxHealthTestWords and maxHealthTestLen bound a health check's
	// command (ContainerSpec.healthcheck.test). It runs in every task every
	// interval and travels in every task's spec: a command line (or a small
	// script for CMD-SHELL) fits in 16 KiB; a longer one belongs in the
	// image.
	maxHealthTestWords = 100
	maxHealthTestLen   = 16 << 10
	// minHealthDuration is docker's minimum for a health check's interval,
	// timeout and start period when set: below it a check would run back
	// to back. maxHealthDuration keeps a typo (an hour meant as a second,
	// times a thousand) from silencing a check: a day is beyond any check.
	minHealthDuration = time.Millisecond
	maxHealthDuration = 24 * time.Hour
	// maxHealthRetries bounds retries; a check needing more failures in a
	// row than this before it counts is not checking anything.
	maxHealthRetries = 10000
	// maxMounts bounds a task's mounts, each a mount in the
	// container's namespace when it starts; far beyond the dozen the
	// largest compose files bind.
	maxMounts = 128
	// maxVolumeNameLen bounds a named volume's name (a mount's source), as
	// other names are bounded (maxNameLen): a directory on the node.
	maxVolumeNameLen = maxNameLen
	// maxTmpfsSize bounds a tmpfs mount's size: 1 TiB, more memory than a
	// node has; a tmpfs takes only what is written to it.
	maxTmpfsSize = 1 << 40
	// maxPorts bounds a service's published ports, each a binding (and
	// firewall rules) on every node that runs one of its tasks. A media
	// server's RTP range of 1,000 ports fits; a task that needs more can
	// share its node's network (no networks), where it binds any port
	// itself.
	maxPorts = 1000
	// maxIngressPorts bounds the ports a service publishes through the
	// routing mesh: every node learns them from the gossip of the
	// service's tasks, where an endpoint must fit one packet.
	maxIngressPorts = gossip.MaxIngressPorts
	// maxUserNameLen is the longest user or group name Linux tools accept.
	maxUserNameLen = 32
	// maxID is the largest usable uid or gid: uid_t is 32 bits and
	// 4294967295 is (uid_t)-1, which the kernel reserves as "no change".
	maxID = math.MaxUint32 - 1
	// minMemoryLimit is about the smallest memory limit runc accepts; below
	// it a container cannot even start, so the task would fail forever.
	minMemoryLimit = 4 << 20
	// maxConstraints bounds the work the scheduler does per node and task;
	// real services use a handful.
	maxConstraints = 64
	// maxConstraintLen bounds one constraint expression. The longest valid
	// one compares a label of maxLabelKeyLen with a value of
	// maxLabelValueLen (4,238 bytes with "node.labels." and the operator);
	// the rest is room for white space around the key and the value.
	maxConstraintLen = maxLabelValueLen + 256
	// maxPreferences bounds nested spreading: each preference splits the
	// nodes again, so a few levels already leave one node per group.
	maxPreferences = 16
	// maxPort is the largest TCP or UDP port.
	maxPort = 65535

	// minHeartbeatPeriod keeps the leader's presence work (a heap operation
	// per ping) bounded for thousands of workers.
	minHeartbeatPeriod = time.Second
	// maxHeartbeatPeriod keeps failure detection useful: a dead node's tasks
	// are rescheduled only after a few missed periods.
	maxHeartbeatPeriod = time.Hour
	// minNodeCertExpiry leaves room for renewal, which starts with about half
	// of the lifetime left, and for clock skew between nodes.
	minNodeCertExpiry = time.Hour
	// maxNodeCertExpiry is ten years; longer-lived certificates defeat the
	// point of rotation.
	maxNodeCertExpiry = 87600 * time.Hour
	// maxTaskHistoryRetention bounds the dead tasks kept per slot in memory
	// and in every snapshot.
	maxTaskHistoryRetention = 100

	// maxFieldErrors caps one reply: errors travel in gRPC trailers, which
	// proxies limit, and nobody reads past the first screen.
	maxFieldErrors = 100
	// maxQuoted is how much of a bad value a message echoes.
	maxQuoted = 64
)
