package netnstest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shoalhq/shoal/internal/retry"
	"github.com/shoalhq/shoal/kernel/clustertest"
	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/netattach"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

// labSubnet is the nodes' LAN. It differs from kernel/tasknet's tests'
// (192.168.250.0/24), which may run at the same time.
const labPrefix = "192.168.251."

// lab2Prefix is the second LAN's (routedLAN), and routerHost the router's
// host number on either LAN.
const (
	lab2Prefix = "192.168.252."
	routerHost = 254
)

// requireLab skips a test that cannot build the lab here.
func requireLab(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a manager, two workers with their containerd, and containers")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes network namespaces, bridges, routes and containers")
	}
	for _, b := range []string{"ip", "nsenter", "iptables", "runc", "/usr/bin/containerd"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s is missing (%v): run scripts/deps.sh", b, err)
		}
	}
	for _, p := range []string{"loopback", "bridge", "static", "portmap"} {
		if _, err := os.Stat(filepath.Join(netattach.DefaultCNIBinDir, p)); err != nil {
			t.Skipf("CNI plugin %s is missing in %s (apt-get install containernetworking-plugins)", p, netattach.DefaultCNIBinDir)
		}
	}
}

// lab is the test's namespaces and processes, all under one short
// directory (the nodes' containerd sockets must fit a unix socket path).
type lab struct {
	t      *testing.T
	dir    string
	bin    string // the shoal binary, the bundled plugins beside it
	prefix string // of the namespaces' names, unique to this process
	lan    string // the LAN namespace

	mu     sync.Mutex
	netns  []string // the nodes' namespaces, by name
	agents []*agentProc
}

// newLab makes the LAN namespace and its bridge. Everything the lab makes
// is removed when the test ends, passed or failed.
func newLab(t *testing.T) *lab {
	t.Helper()
	requireLab(t)
	bin := clustertest.Binary(t)
	dir, err := os.MkdirTemp("/tmp", "shnt")
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, dir: dir, bin: bin, prefix: fmt.Sprintf("shnt%d", os.Getpid()%100000)}
	l.lan = l.prefix + "-lan"
	// Registered first, so it runs last: by then every process is gone.
	t.Cleanup(l.teardown)
	l.ip("netns", "add", l.lan)
	l.addNetns(l.lan)
	l.ip("-n", l.lan, "link", "set", "lo", "up")
	l.ip("-n", l.lan, "link", "add", "br0", "type", "bridge")
	l.ip("-n", l.lan, "link", "set", "br0", "up")
	return l
}

func (l *lab) addNetns(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.netns = append(l.netns, name)
}

// ip runs ip(8), failing the test on error.
func (l *lab) ip(args ...string) string {
	l.t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// node makes a node's namespace, on the LAN at labPrefix+host, and
// returns its name.
func (l *lab) node(name string, host int) string {
	l.t.Helper()
	return l.nodeOn(l.lan, labPrefix, name, host)
}

// nodeOn makes a node's namespace on the LAN whose namespace is lan, at
// prefix+host, and returns its name.
func (l *lab) nodeOn(lan, prefix, name string, host int) string {
	l.t.Helper()
	ns := l.prefix + "-" + name
	l.ip("netns", "add", ns)
	l.addNetns(ns)
	l.ip("-n", ns, "link", "set", "lo", "up")
	l.plug(lan, ns, "eth0", fmt.Sprintf("%s%d/24", prefix, host), host)
	return ns
}

// plug joins namespace ns to the bridge of LAN namespace lan by a veth
// pair, its end named ifname and holding addr (CIDR), up.
func (l *lab) plug(lan, ns, ifname, addr string, host int) {
	l.t.Helper()
	veth := fmt.Sprintf("v%s%d", l.prefix[4:], host) // unique on the LAN side
	l.ip("-n", lan, "link", "add", veth, "type", "veth", "peer", "name", ifname, "netns", ns)
	l.ip("-n", lan, "link", "set", veth, "master", "br0", "up")
	l.ip("-n", ns, "addr", "add", addr, "dev", ifname)
	l.ip("-n", ns, "link", "set", ifname, "up")
}

// routedLAN makes a second LAN (a namespace with a bridge, on
// lab2Prefix) and a router namespace with a leg on each LAN (host
// routerHost on both) that forwards between them, and returns the second
// LAN's namespace. Nodes on either LAN reach the other through the
// router once they route to it (defaultRoute): they share no link.
func (l *lab) routedLAN() string {
	l.t.Helper()
	lan2 := l.prefix + "-lan2"
	l.ip("netns", "add", lan2)
	l.addNetns(lan2)
	l.ip("-n", lan2, "link", "set", "lo", "up")
	l.ip("-n", lan2, "link", "add", "br0", "type", "bridge")
	l.ip("-n", lan2, "link", "set", "br0", "up")
	rt := l.prefix + "-rt"
	l.ip("netns", "add", rt)
	l.addNetns(rt)
	l.ip("-n", rt, "link", "set", "lo", "up")
	l.plug(l.lan, rt, "eth0", fmt.Sprintf("%s%d/24", labPrefix, routerHost), routerHost)
	l.plug(lan2, rt, "eth1", fmt.Sprintf("%s%d/24", lab2Prefix, routerHost), routerHost)
	if out, err := exec.Command("ip", "netns", "exec", rt, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward").CombinedOutput(); err != nil {
		l.t.Fatalf("ip_forward in %s: %v: %s", rt, err, out)
	}
	return lan2
}

// defaultRoute sends what namespace ns does not route otherwise to the
// router's leg on its LAN (prefix is the LAN's).
func (l *lab) defaultRoute(ns, prefix string) {
	l.t.Helper()
	l.ip("-n", ns, "route", "replace", "default", "via", fmt.Sprintf("%s%d", prefix, routerHost))
}

// agentProc is a `shoal agent` process in a node's namespace.
type agentProc struct {
	name   string
	config string
	log    string
	cmd    *exec.Cmd
	done   chan struct{}
}

// start runs `shoal agent --config` with config (TOML) in namespace ns.
func (l *lab) start(name, ns, config string) *agentProc {
	l.t.Helper()
	dir := filepath.Join(l.dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		l.t.Fatal(err)
	}
	a := &agentProc{name: name, config: filepath.Join(dir, "node.toml"), log: filepath.Join(dir, "agent.log"), done: make(chan struct{})}
	if err := os.WriteFile(a.config, []byte(config), 0o600); err != nil {
		l.t.Fatal(err)
	}
	logf, err := os.Create(a.log)
	if err != nil {
		l.t.Fatal(err)
	}
	// nsenter enters the network namespace only and execs shoal, which
	// so stays the child (Pdeathsig holds).
	a.cmd = exec.Command("nsenter", "--net=/run/netns/"+ns, l.bin, "agent", "--config", a.config)
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		logf.Close()
		l.t.Fatalf("start %s: %v", name, err)
	}
	go func() { a.cmd.Wait(); logf.Close(); close(a.done) }()
	l.mu.Lock()
	l.agents = append(l.agents, a)
	l.mu.Unlock()
	return a
}

// stop ends an agent with SIGTERM, then SIGKILL after 20 s.
func (a *agentProc) stop() {
	select {
	case <-a.done:
		return
	default:
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(20 * time.Second):
		a.cmd.Process.Kill()
		<-a.done
	}
}

// client is a control API client over a manager's unix socket.
func (l *lab) client(socket string) controlv1.ControlClient {
	l.t.Helper()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(sdk.MaxMessageBytes)))
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { conn.Close() })
	return controlv1.NewControlClient(conn)
}

// eventually retries fn until it returns nil, failing the test with the
// agents' logs after limit.
func (l *lab) eventually(limit time.Duration, what string, fn func(ctx context.Context) error) {
	l.t.Helper()
	if err := retry.Until(limit, 5*time.Second, fn); err != nil {
		l.dumpLogs()
		l.t.Fatalf("%s: not within %s: %v", what, limit, sdk.FromGRPC(err))
	}
}

// dumpLogs prints the tail of every agent's log.
func (l *lab) dumpLogs() {
	l.mu.Lock()
	agents := slices.Clone(l.agents)
	l.mu.Unlock()
	for _, a := range agents {
		b, _ := os.ReadFile(a.log)
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		l.t.Logf("---- %s log (tail) ----\n%s", a.name, b)
	}
}

// teardown stops every process the lab started, and every process that
// runs in a node's namespace or inside the lab's directory (containerd
// shims, containers), unmounts what is mounted under the directory, and
// deletes the namespaces and the directory.
func (l *lab) teardown() {
	t := l.t
	l.mu.Lock()
	agents, names := slices.Clone(l.agents), slices.Clone(l.netns)
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, a := range agents {
		wg.Go(a.stop)
	}
	wg.Wait()
	if t.Failed() {
		l.dumpLogs()
	}
	if dir := os.Getenv("SHOAL_TEST_LOGDIR"); dir != "" {
		for _, a := range agents {
			if b, err := os.ReadFile(a.log); err == nil {
				os.WriteFile(filepath.Join(dir, t.Name()+"-"+a.name+".log"), b, 0o644)
			}
		}
	}

	inodes := map[uint64]bool{}
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Stat("/run/netns/"+n, &st); err == nil {
			inodes[st.Ino] = true
		}
	}
	// Processes left (a container whose task was not removed, its shim):
	// twice, since killing a shim may leave its container to init.
	for range 2 {
		for _, pid := range l.strays(inodes) {
			if err := unix.Kill(pid, unix.SIGKILL); err == nil {
				t.Logf("killed stray process %d", pid)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, m := range mountsUnder(l.dir) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			t.Errorf("unmount %s: %v", m, err)
		}
	}
	for _, n := range slices.Backward(names) {
		if out, err := exec.Command("ip", "netns", "delete", n).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v: %s", n, err, out)
		}
	}
	if err := os.RemoveAll(l.dir); err != nil {
		t.Errorf("remove %s: %v", l.dir, err)
	}
}

// strays lists the processes in one of the namespaces (agents, plugins,
// containerd, shims) and their children that are not (containers, in
// namespaces of their own), children first; never this process.
func (l *lab) strays(netns map[uint64]bool) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	in := map[int]bool{}
	parent := map[int]int{}
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == self || pid <= 1 {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) == nil && netns[st.Ino] {
			in[pid] = true
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			// pid (comm) state ppid ...: comm may hold spaces and parens.
			if i := strings.LastIndexByte(string(b), ')'); i > 0 {
				var state string
				var ppid int
				if _, err := fmt.Sscanf(string(b[i+1:]), " %s %d", &state, &ppid); err == nil {
					parent[pid] = ppid
				}
			}
		}
	}
	var children, rest []int
	for pid, pp := range parent {
		switch {
		case in[pid]:
			rest = append(rest, pid)
		case in[pp]:
			children = append(children, pid)
		}
	}
	return append(children, rest...)
}

// mountsUnder lists the mount points under dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			out = append(out, fields[4])
		}
	}
	slices.SortFunc(out, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return out
}
