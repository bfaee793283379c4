package netattach

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/hostnet"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// Config is a Manager's.
type Config struct {
	// StateDir holds the tasks' network namespaces (netns/), their records
	// (tasks/) and libcni's cached results (cni/). It must survive a restart
	// of the process. Required.
	StateDir string
	// CNIBinDir is where the CNI plugins are. Default: /usr/lib/cni (Debian's
	// containernetworking-plugins).
	CNIBinDir string
	// Logger receives transitions. Default: discarded.
	Logger *slog.Logger
}

// DefaultCNIBinDir is where Debian installs the CNI plugins.
const DefaultCNIBinDir = "/usr/lib/cni"

// requiredPlugins are the CNI plugins Attach runs.
var requiredPlugins = []string{"loopback", "bridge", "static", "portmap"}

// Manager attaches tasks to networks on one node. Its methods are safe for
// concurrent use; calls for one task are serialized.
type Manager struct {
	stateDir string
	log      *slog.Logger
	cni      *libcni.CNIConfig
	fw       *firewall
	tasks    keyedMutex

	// mu guards nets, the refs field of its values, and ports.
	mu   sync.Mutex
	nets map[string]*network
	// ports are the published ports in use on the node, and their tasks.
	ports map[portPlan]string
}

// network is a network that has tasks (or tasks being attached) on this
// node.
type network struct {
	// mu is held shared while a task is attached to the network and
	// exclusively while the network is torn down on the node.
	mu   sync.RWMutex
	plan netPlan // the network's fields of the first task; every task agrees

	refs int // records on disk naming the network; guarded by Manager.mu

	// setupMu guards setup: the firewall rules are in place.
	setupMu sync.Mutex
	setup   bool
}

// record is what StateDir/tasks/<task>.json keeps of an attached task, so
// that Detach works after a restart.
type record struct {
	TaskID   string     `json:"task_id"`
	Netns    string     `json:"netns"`
	Networks []netPlan  `json:"networks"`
	Ports    []portPlan `json:"ports,omitempty"`
	// Complete is false while Attach runs: a record found incomplete is
	// cleaned up before anything else happens to the task.
	Complete bool `json:"complete"`
}

// Attached returns the IDs of the tasks with an attachment recorded in the
// state directory (complete or not), so that an executor can detach those
// whose container is gone: a Remove interrupted between deleting the
// container and detaching its networks leaves one.
func (m *Manager) Attached() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(m.stateDir, "tasks"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netattach: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && !e.IsDir() {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// New returns a Manager over cfg.StateDir, taking over the tasks recorded
// there. It fails when a CNI plugin it needs is missing.
func New(cfg Config) (*Manager, error) {
	var fe sdk.FieldErrors
	if cfg.StateDir == "" {
		fe.Add("state_dir", "is required")
	} else if !filepath.IsAbs(cfg.StateDir) {
		fe.Add("state_dir", "%q is not an absolute path", cfg.StateDir)
	}
	if cfg.CNIBinDir == "" {
		cfg.CNIBinDir = DefaultCNIBinDir
	}
	if err := fe.Err(); err != nil {
		return nil, fmt.Errorf("netattach: %w", err)
	}
	for _, p := range requiredPlugins {
		if st, err := os.Stat(filepath.Join(cfg.CNIBinDir, p)); err != nil || st.IsDir() {
			return nil, fmt.Errorf("netattach: CNI plugin %q not found in %s (Debian: apt-get install containernetworking-plugins): %w", p, cfg.CNIBinDir, sdk.ErrFailedPrecondition)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		stateDir: cfg.StateDir,
		log:      log,
		// An explicit exec: libcni's lazy default is set without a lock.
		cni: libcni.NewCNIConfigWithCacheDir([]string{cfg.CNIBinDir}, filepath.Join(cfg.StateDir, "cni"), &invoke.DefaultExec{
			RawExec:       &invoke.RawExec{Stderr: &logWriter{log: log, msg: "CNI plugin stderr"}},
			PluginDecoder: version.PluginDecoder{},
		}),
		fw:    newFirewall(),
		nets:  map[string]*network{},
		ports: map[portPlan]string{},
	}
	if m.fw.ipt.Bin == "" {
		log.Warn("no iptables: tasks will not reach outside their networks, and published ports fail")
	}
	for _, d := range []string{"netns", "tasks", "cni"} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, d), 0o700); err != nil {
			return nil, fmt.Errorf("netattach: %w", err)
		}
	}
	recs, err := m.loadRecords()
	if err != nil {
		return nil, fmt.Errorf("netattach: %w", err)
	}
	for _, rec := range recs {
		if err := m.acquire(rec); err != nil {
			return nil, fmt.Errorf("netattach: task %s: %w", rec.TaskID, err)
		}
	}
	return m, nil
}

// Attach gives a task a network namespace with an interface on each of
// nets (eth0, eth1, ... in order; the default route goes through the first)
// and ports published on the node, forwarded to the first network's
// address. It returns the namespace's path, for the container's spec.
//
// Attach is idempotent: called again for a task attached with the same
// networks and ports, it returns the same path. A task attached with other
// networks or ports must be detached first (ErrFailedPrecondition). Invalid
// input is an error of kind ErrInvalidArgument naming the fields; nothing is
// changed then.
func (m *Manager) Attach(ctx context.Context, taskID string, nets []*objectv1.NetworkAttachment, ports []*objectv1.PortConfig) (netnsPath string, err error) {
	plans, pps, err := plan(taskID, nets, ports)
	if err != nil {
		return "", fmt.Errorf("attach task %s: %w", taskID, err)
	}
	defer m.tasks.lock(taskID)()

	rec := &record{TaskID: taskID, Netns: filepath.Join(m.stateDir, "netns", taskID), Networks: plans, Ports: pps}
	old, err := m.loadRecord(taskID)
	if err != nil {
		return "", fmt.Errorf("attach task %s: %w", taskID, err)
	}
	if old != nil {
		if old.Complete {
			if !old.sameNetworks(rec) {
				return "", fmt.Errorf("attach task %s: %w: attached already with other networks or ports; detach it first", taskID, sdk.ErrFailedPrecondition)
			}
			if ok, err := hostnet.IsNetns(old.Netns); err != nil {
				return "", fmt.Errorf("attach task %s: %w", taskID, err)
			} else if ok {
				return old.Netns, nil
			}
		}
		// Interrupted by a crash, or the namespace went with a reboot:
		// start over.
		m.log.Info("cleaning up an interrupted attachment", "task_id", taskID)
		if err := m.detach(ctx, old); err != nil {
			return "", fmt.Errorf("attach task %s: clean up the previous attachment: %w", taskID, err)
		}
	}

	if err := m.acquire(rec); err != nil {
		return "", fmt.Errorf("attach task %s: %w", taskID, err)
	}
	if err := m.writeRecord(rec); err != nil {
		m.release(ctx, rec)
		return "", fmt.Errorf("attach task %s: %w", taskID, err)
	}
	if err := m.attach(ctx, rec); err != nil {
		// Undo what was done, even if ctx is what failed.
		if derr := m.detach(context.WithoutCancel(ctx), rec); derr != nil {
			err = errors.Join(err, fmt.Errorf("undo: %w", derr))
		}
		return "", fmt.Errorf("attach task %s: %w", taskID, err)
	}
	rec.Complete = true
	if err := m.writeRecord(rec); err != nil {
		if derr := m.detach(context.WithoutCancel(ctx), rec); derr != nil {
			err = errors.Join(err, fmt.Errorf("undo: %w", derr))
		}
		return "", fmt.Errorf("attach task %s: %w", taskID, err)
	}
	m.log.Debug("task attached", "task_id", taskID, "netns", rec.Netns)
	return rec.Netns, nil
}

// attach does the work of Attach for a recorded task.
func (m *Manager) attach(ctx context.Context, rec *record) error {
	if err := hostnet.CreateNetns(rec.Netns); err != nil {
		return err
	}
	rt := &libcni.RuntimeConf{ContainerID: rec.TaskID, NetNS: rec.Netns, IfName: "lo"}
	if _, err := m.cni.AddNetworkList(ctx, loopbackList, rt); err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	for i, n := range rec.Networks {
		list, rt, err := m.cniList(rec, i)
		if err != nil {
			return err
		}
		nw := m.network(n.NetworkID)
		nw.mu.RLock()
		err = m.setupNetwork(ctx, nw)
		if err == nil {
			_, err = m.cni.AddNetworkList(ctx, list, rt)
		}
		nw.mu.RUnlock()
		if err != nil {
			return fmt.Errorf("network %s: %w", n.NetworkID, err)
		}
	}
	return nil
}

// setupNetwork makes the firewall rules of a network, once while it is on
// the node.
func (m *Manager) setupNetwork(ctx context.Context, nw *network) error {
	nw.setupMu.Lock()
	defer nw.setupMu.Unlock()
	if nw.setup {
		return nil
	}
	if err := hostnet.EnableForwarding(); err != nil {
		return err
	}
	if err := m.fw.ensureNetwork(ctx, nw.plan.NetworkID, nw.plan.Subnet, nw.plan.NodeSubnet); err != nil {
		return err
	}
	nw.setup = true
	return nil
}

// Detach removes a task's interfaces, published ports and network
// namespace. Detaching a task that is not attached is not an error; a
// failed Detach can be retried. When the task was the network's last on the
// node, the network's bridge and firewall rules go too.
func (m *Manager) Detach(ctx context.Context, taskID string) error {
	var fe sdk.FieldErrors
	validateTaskID(&fe, taskID)
	if err := fe.Err(); err != nil {
		return fmt.Errorf("detach task %s: %w", taskID, err)
	}
	defer m.tasks.lock(taskID)()
	rec, err := m.loadRecord(taskID)
	if err != nil {
		return fmt.Errorf("detach task %s: %w", taskID, err)
	}
	if rec == nil {
		return nil
	}
	if err := m.detach(ctx, rec); err != nil {
		return fmt.Errorf("detach task %s: %w", taskID, err)
	}
	m.log.Debug("task detached", "task_id", taskID)
	return nil
}

// detach undoes a recorded attachment, complete or not, then removes the
// record and releases its networks. On error the record stays for a retry.
func (m *Manager) detach(ctx context.Context, rec *record) error {
	// After a reboot the namespace is gone and its path a plain file: the
	// plugins are told there is no namespace, and clean up the rest.
	nsPath := rec.Netns
	if ok, err := hostnet.IsNetns(nsPath); err != nil {
		return err
	} else if !ok {
		nsPath = ""
	}
	var errs []error
	for i := len(rec.Networks) - 1; i >= 0; i-- {
		list, rt, err := m.cniList(rec, i)
		if err == nil {
			rt.NetNS = nsPath
			err = m.cni.DelNetworkList(ctx, list, rt)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("network %s: %w", rec.Networks[i].NetworkID, err))
		}
	}
	rt := &libcni.RuntimeConf{ContainerID: rec.TaskID, NetNS: nsPath, IfName: "lo"}
	if err := m.cni.DelNetworkList(ctx, loopbackList, rt); err != nil {
		errs = append(errs, fmt.Errorf("loopback: %w", err))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := hostnet.RemoveNetns(rec.Netns); err != nil {
		return err
	}
	if err := os.Remove(m.recordPath(rec.TaskID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove record: %w", err)
	}
	m.release(ctx, rec)
	return nil
}

// network returns the node's state of an acquired network.
func (m *Manager) network(id string) *network {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nets[id]
}

// acquire counts rec's reference to each of its networks, after checking
// that it agrees with the node's other tasks on them.
func (m *Manager) acquire(rec *record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var fe sdk.FieldErrors
	for i, n := range rec.Networks {
		f := fmt.Sprintf("networks[%d]", i)
		if nw, ok := m.nets[n.NetworkID]; ok {
			p := nw.plan
			if p.Subnet != n.Subnet || p.NodeSubnet != n.NodeSubnet || p.Gateway != n.Gateway {
				fe.Add(f, "network %s is on this node with subnet %s, node_subnet %s, gateway %s; the task has %s, %s, %s", n.NetworkID, p.Subnet, p.NodeSubnet, p.Gateway, n.Subnet, n.NodeSubnet, n.Gateway)
			}
			continue
		}
		for id, nw := range m.nets {
			switch {
			case nw.plan.Subnet.Overlaps(n.Subnet):
				fe.Add(f+".subnet", "%s overlaps subnet %s of network %s on this node", n.Subnet, nw.plan.Subnet, id)
			case nw.plan.Bridge == n.Bridge:
				fe.Add(f+".network_id", "%s and network %s on this node share the bridge name %s", n.NetworkID, id, n.Bridge)
			}
		}
	}
	for i, p := range rec.Ports {
		if other, ok := m.ports[publishedKey(p)]; ok && other != rec.TaskID {
			fe.Add(fmt.Sprintf("ports[%d].published_port", i), "%s/%d is published on this node by task %s", p.Protocol, p.PublishedPort, other)
		}
	}
	if len(fe) > 0 {
		return fmt.Errorf("%w: %w", sdk.ErrFailedPrecondition, fe)
	}
	for _, p := range rec.Ports {
		m.ports[publishedKey(p)] = rec.TaskID
	}
	for _, n := range rec.Networks {
		nw, ok := m.nets[n.NetworkID]
		if !ok {
			nw = &network{plan: n}
			nw.plan.IfName, nw.plan.Addr = "", netip.Addr{}
			m.nets[n.NetworkID] = nw
		}
		nw.refs++
	}
	return nil
}

// publishedKey identifies a published port on the node.
func publishedKey(p portPlan) portPlan {
	return portPlan{Protocol: p.Protocol, PublishedPort: p.PublishedPort}
}

// release drops rec's references and tears down the networks left without
// tasks. A failed teardown is logged: the task is detached either way.
func (m *Manager) release(ctx context.Context, rec *record) {
	// Cleanup runs to the end even when the caller gives up.
	ctx = context.WithoutCancel(ctx)
	var idle []*network
	m.mu.Lock()
	for _, p := range rec.Ports {
		if m.ports[publishedKey(p)] == rec.TaskID {
			delete(m.ports, publishedKey(p))
		}
	}
	for _, n := range rec.Networks {
		nw := m.nets[n.NetworkID]
		nw.refs--
		if nw.refs == 0 {
			idle = append(idle, nw)
		}
	}
	m.mu.Unlock()
	for _, nw := range idle {
		if err := m.teardown(ctx, nw); err != nil {
			m.log.Warn("network left on the node after its last task", "network_id", nw.plan.NetworkID, "err", err)
		}
	}
}

// teardown removes a network without tasks from the node: bridge, firewall
// rules. A task attaching meanwhile waits, then sets it up again. The
// routes to other nodes' slices of the network are the node's: it drops
// them when it no longer has tasks on the network.
func (m *Manager) teardown(ctx context.Context, nw *network) error {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	m.mu.Lock()
	if nw.refs > 0 {
		m.mu.Unlock()
		return nil
	}
	m.mu.Unlock()

	var errs []error
	if l, err := netlink.LinkByName(nw.plan.Bridge); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete bridge %s: %w", nw.plan.Bridge, err))
		}
	} else if !errors.As(err, new(netlink.LinkNotFoundError)) {
		errs = append(errs, fmt.Errorf("find bridge %s: %w", nw.plan.Bridge, err))
	}
	nw.setupMu.Lock()
	if err := m.fw.removeNetwork(ctx, nw.plan.NetworkID, nw.plan.Subnet, nw.plan.NodeSubnet); err != nil {
		errs = append(errs, err)
	}
	nw.setup = false
	nw.setupMu.Unlock()

	m.mu.Lock()
	if nw.refs == 0 && m.nets[nw.plan.NetworkID] == nw {
		delete(m.nets, nw.plan.NetworkID)
	}
	m.mu.Unlock()
	if len(errs) == 0 {
		m.log.Info("network removed from the node", "network_id", nw.plan.NetworkID, "bridge", nw.plan.Bridge)
	}
	return errors.Join(errs...)
}

// sameNetworks reports whether two records attach to the same networks and
// ports.
func (r *record) sameNetworks(o *record) bool {
	if len(r.Networks) != len(o.Networks) || len(r.Ports) != len(o.Ports) {
		return false
	}
	for i := range r.Networks {
		if r.Networks[i] != o.Networks[i] {
			return false
		}
	}
	for i := range r.Ports {
		if r.Ports[i] != o.Ports[i] {
			return false
		}
	}
	return true
}

func (m *Manager) recordPath(taskID string) string {
	return filepath.Join(m.stateDir, "tasks", taskID+".json")
}

// loadRecord reads a task's record; nil when there is none.
func (m *Manager) loadRecord(taskID string) (*record, error) {
	b, err := os.ReadFile(m.recordPath(taskID))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read record: %w", err)
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("decode record %s: %w", m.recordPath(taskID), err)
	}
	return &rec, nil
}

// loadRecords reads every record under StateDir/tasks.
func (m *Manager) loadRecords() ([]*record, error) {
	ents, err := os.ReadDir(filepath.Join(m.stateDir, "tasks"))
	if err != nil {
		return nil, err
	}
	var recs []*record
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() {
			continue
		}
		rec, err := m.loadRecord(id)
		if err != nil {
			return nil, err
		}
		if rec != nil {
			recs = append(recs, rec)
		}
	}
	return recs, nil
}

// writeRecord replaces a task's record atomically (a rename), without
// fsync: the record only has to outlive this process, not the machine.
// Everything it lets Detach undo (the namespace, its interfaces, the
// published ports' firewall rules) is gone after a reboot anyway, and two
// fsyncs per task were a measurable share of starting hundreds of tasks.
func (m *Manager) writeRecord(rec *record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	p := m.recordPath(rec.TaskID)
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write record: %w", err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write record: %w", err)
	}
	return nil
}

// logWriter logs each line written to it (a child's stderr).
type logWriter struct {
	log *slog.Logger
	msg string
}

func (w *logWriter) Write(p []byte) (int, error) {
	for line := range strings.Lines(string(p)) {
		if line = strings.TrimSpace(line); line != "" {
			w.log.Warn(w.msg, "line", line)
		}
	}
	return len(p), nil
}

// keyedMutex is a mutex per key, for keys that come and go.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu    sync.Mutex
	users int // guarded by keyedMutex.mu
}

// lock locks key and returns its unlock.
func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e, ok := k.m[key]
	if !ok {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.users++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		e.users--
		if e.users == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
