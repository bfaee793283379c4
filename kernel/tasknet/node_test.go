package tasknet

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/netnstest"
	"github.com/shoalhq/shoal/sdk/netattach"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// The test harness: a "node" is a network namespace the test makes, with an
// executor's Manager (sdk/netattach) and an agent's Router running in a
// helper process inside it (this test binary, re-run
// under nsenter), so that the CNI plugins and iptables the Manager runs, and
// its routes, all land in the node's namespace and never on the host.

const helperEnv = "SHOAL_TASKNET_HELPER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		os.Exit(helperMain(dir))
	}
	os.Exit(m.Run())
}

// helperReq is one call to the helper's Manager.
type helperReq struct {
	Op     string                        `json:"op"` // attach, detach, peers, route, underlay
	TaskID string                        `json:"task_id,omitempty"`
	Nets   []*objectv1.NetworkAttachment `json:"nets,omitempty"`
	Ports  []*objectv1.PortConfig        `json:"ports,omitempty"`
	Peers  []Peer                        `json:"peers,omitempty"`
	// Locals, for "route": this node's slices, as an agent knows them.
	Locals []Local `json:"locals,omitempty"`
	// Many, for "attach-many" and "detach-many": that many tasks, named
	// TaskID-<i>, on Nets[0]'s slice (addresses from .10 up), attached or
	// detached concurrently.
	Many int `json:"many,omitempty"`
	// NodeID and Addr, for "underlay": the Router's SetUnderlay.
	NodeID string `json:"node_id,omitempty"`
	Addr   string `json:"addr,omitempty"`
}

type helperResp struct {
	// VTEPMAC is what "underlay" returned.
	VTEPMAC string        `json:"vtep_mac,omitempty"`
	Netns   string        `json:"netns,omitempty"`
	Err     string        `json:"err,omitempty"`
	Elapsed time.Duration `json:"elapsed,omitempty"`
}

// helperMain serves requests from stdin, one JSON line each, until EOF.
func helperMain(stateDir string) int {
	overlayRecheck = 0 // tests check repairs of the firewall at once
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	m, err := netattach.New(netattach.Config{StateDir: stateDir, Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	router := NewRouter(log)
	// For "peers" the helper stands for an agent: after each change its
	// Router gets the node's slices from the tasks attached (the agent's
	// come from its assignment set) and the peers last given. Until the
	// first "peers", routes are left to "route".
	var (
		peers    []Peer
		peersSet bool
		attached = map[string][]*objectv1.NetworkAttachment{}
	)
	setRoutes := func() error {
		if !peersSet {
			return nil
		}
		seen := map[Local]bool{}
		var locals []Local
		for _, nets := range attached {
			for _, n := range nets {
				l := Local{NetworkID: n.GetNetworkId(), Subnet: n.GetSubnet(), NodeSubnet: n.GetNodeSubnet()}
				if !seen[l] {
					seen[l] = true
					locals = append(locals, l)
				}
			}
		}
		return router.Set(locals, peers)
	}
	resync := func(taskID string) {
		if err := setRoutes(); err != nil {
			log.Warn("routes to peer slices", "task_id", taskID, "err", err)
		}
	}
	dec := json.NewDecoder(os.Stdin)
	enc := json.NewEncoder(os.Stdout)
	for {
		var req helperReq
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return 0
			}
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		var resp helperResp
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		switch req.Op {
		case "attach":
			resp.Netns, err = m.Attach(ctx, req.TaskID, req.Nets, req.Ports)
			if err == nil {
				attached[req.TaskID] = req.Nets
				resync(req.TaskID)
			}
		case "detach":
			err = m.Detach(ctx, req.TaskID)
			if err == nil {
				delete(attached, req.TaskID)
				resync(req.TaskID)
			}
		case "peers":
			peers, peersSet = req.Peers, true
			err = setRoutes()
		case "route":
			err = router.Set(req.Locals, req.Peers)
		case "underlay":
			resp.VTEPMAC, err = router.SetUnderlay(req.NodeID, req.Addr)
		case "attach-many", "detach-many":
			start := time.Now()
			err = many(ctx, m, req)
			resp.Elapsed = time.Since(start)
		default:
			err = fmt.Errorf("unknown op %q", req.Op)
		}
		cancel()
		if err != nil {
			resp.Err = err.Error()
		}
		if err := enc.Encode(resp); err != nil {
			return 1
		}
	}
}

// many attaches or detaches req.Many tasks at once.
func many(ctx context.Context, m *netattach.Manager, req helperReq) error {
	errs := make(chan error, req.Many)
	for i := range req.Many {
		go func() {
			id := fmt.Sprintf("%s-%d", req.TaskID, i)
			if req.Op == "detach-many" {
				errs <- m.Detach(ctx, id)
				return
			}
			a := proto.Clone(req.Nets[0]).(*objectv1.NetworkAttachment)
			p := netip.MustParsePrefix(a.Addr)
			b := p.Addr().As4()
			b[2], b[3] = b[2]+byte((10+i)/256), byte((10+i)%256)
			a.Addr = netip.PrefixFrom(netip.AddrFrom4(b), p.Bits()).String()
			_, err := m.Attach(ctx, id, []*objectv1.NetworkAttachment{a}, nil)
			errs <- err
		}()
	}
	var all []error
	for range req.Many {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// testNode is a network namespace standing for a node, with its Manager.
type testNode struct {
	name     string
	ns       string // the namespace's bind mount
	addr     string // its address on the test link
	stateDir string

	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// requireNetworking skips a test that cannot make namespaces or run the
// CNI plugins here.
func requireNetworking(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes network namespaces, bridges and routes")
	}
	for _, p := range []string{"loopback", "bridge", "static", "portmap"} {
		if _, err := os.Stat(filepath.Join(netattach.DefaultCNIBinDir, p)); err != nil {
			t.Skipf("CNI plugin %s missing in %s (apt-get install containernetworking-plugins)", p, netattach.DefaultCNIBinDir)
		}
	}
	for _, b := range []string{"nsenter", "iptables"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s missing: %v", b, err)
		}
	}
}

// newTestNodes makes two nodes linked by a veth pair on 192.168.250.0/24,
// each with a Manager running. Everything is removed when the test ends.
func newTestNodes(t testing.TB) (a, b *testNode) {
	t.Helper()
	requireNetworking(t)
	dir := t.TempDir()
	a = &testNode{name: "a", ns: filepath.Join(dir, "node-a"), addr: "192.168.250.1", stateDir: filepath.Join(dir, "state-a")}
	b = &testNode{name: "b", ns: filepath.Join(dir, "node-b"), addr: "192.168.250.2", stateDir: filepath.Join(dir, "state-b")}
	makeNamespaces(t, a, b)
	// The pair is made on the host with unique names, then each end moves
	// into its node and becomes eth0 there.
	va, vb := fmt.Sprintf("stn%da", os.Getpid()%100000), fmt.Sprintf("stn%db", os.Getpid()%100000)
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: va}, PeerName: vb}); err != nil {
		t.Fatalf("veth: %v", err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(va); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	for _, x := range []struct {
		n   *testNode
		dev string
	}{{a, va}, {b, vb}} {
		nsh, err := netns.GetFromPath(x.n.ns)
		if err != nil {
			t.Fatal(err)
		}
		l, err := netlink.LinkByName(x.dev)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetNsFd(l, int(nsh)); err != nil {
			t.Fatal(err)
		}
		h, err := netlink.NewHandleAt(nsh)
		if err != nil {
			t.Fatal(err)
		}
		must := func(err error) {
			if err != nil {
				t.Fatalf("node %s: %v", x.n.name, err)
			}
		}
		l, err = h.LinkByName(x.dev)
		must(err)
		must(h.LinkSetName(l, "eth0"))
		addr, err := netlink.ParseAddr(x.n.addr + "/24")
		must(err)
		must(h.AddrAdd(l, addr))
		must(h.LinkSetUp(l))
		lo, err := h.LinkByName("lo")
		must(err)
		must(h.LinkSetUp(lo))
		h.Close()
		nsh.Close()
		x.n.start(t)
	}
	return a, b
}

// start runs the node's Manager in a helper process inside the node.
func (n *testNode) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command("nsenter", "--net="+n.ns, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+n.stateDir)
	cmd.Stderr = &testWriter{t: t, prefix: "node " + n.name + ": "}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.cmd, n.stdin, n.out = cmd, stdin, bufio.NewReader(stdout)
}

// stop ends the helper (closing its input ends it).
func (n *testNode) stop(t testing.TB) {
	if n.cmd == nil {
		return
	}
	_ = n.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- n.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("node %s helper: %v", n.name, err)
		}
	case <-time.After(30 * time.Second):
		_ = n.cmd.Process.Kill()
		<-done
		t.Errorf("node %s helper did not exit", n.name)
	}
	n.cmd = nil
}

// restart stops the node's Manager and starts a new one on the same state.
func (n *testNode) restart(t testing.TB) {
	t.Helper()
	n.stop(t)
	n.start(t)
}

// call sends one request to the node's Manager.
func (n *testNode) call(t testing.TB, req helperReq) helperResp {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.stdin.Write(append(b, '\n')); err != nil {
		t.Fatalf("node %s: %v", n.name, err)
	}
	line, err := n.out.ReadBytes('\n')
	if err != nil {
		t.Fatalf("node %s: reading reply: %v", n.name, err)
	}
	var resp helperResp
	if err := json.Unmarshal(line, &resp); err != nil {
		t.Fatalf("node %s: reply %q: %v", n.name, line, err)
	}
	return resp
}

func (n *testNode) attach(t testing.TB, taskID string, nets []*objectv1.NetworkAttachment, ports []*objectv1.PortConfig) string {
	t.Helper()
	resp := n.call(t, helperReq{Op: "attach", TaskID: taskID, Nets: nets, Ports: ports})
	if resp.Err != "" {
		t.Fatalf("node %s: Attach(%s) = %s", n.name, taskID, resp.Err)
	}
	return resp.Netns
}

func (n *testNode) detach(t testing.TB, taskID string) {
	t.Helper()
	if resp := n.call(t, helperReq{Op: "detach", TaskID: taskID}); resp.Err != "" {
		t.Fatalf("node %s: Detach(%s) = %s", n.name, taskID, resp.Err)
	}
}

func (n *testNode) setPeers(t testing.TB, peers ...Peer) {
	t.Helper()
	if resp := n.call(t, helperReq{Op: "peers", Peers: peers}); resp.Err != "" {
		t.Fatalf("node %s: Router.Set with peers = %s", n.name, resp.Err)
	}
}

// run runs a command inside the node (iptables, ip).
func (n *testNode) run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("nsenter", append([]string{"--net=" + n.ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("node %s: %s: %v: %s", n.name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// handle is a netlink handle inside the node.
func (n *testNode) handle(t testing.TB) *netlink.Handle {
	t.Helper()
	nsh, err := netns.GetFromPath(n.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// serveIn listens on addr inside the namespace at nsPath until the test
// ends, and hands each connection to handle in a goroutine of its own.
func serveIn(t testing.TB, nsPath, network, addr string, handle func(net.Conn)) {
	t.Helper()
	var ln net.Listener
	if err := netnstest.DoAt(nsPath, func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	}); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, nsPath, err)
	}
	netnstest.Serve(t, ln, handle)
}

// echoServer listens on addr inside a namespace and answers every
// connection with the address it came from, as the server sees it.
func echoServer(t testing.TB, nsPath, network, addr string) {
	t.Helper()
	serveIn(t, nsPath, network, addr, func(c net.Conn) {
		defer c.Close()
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		_, _ = c.Write([]byte(host + "\n"))
	})
}

// dialFrom connects from inside a namespace and returns what the echo
// server saw as the client's address.
func dialFrom(nsPath, addr string) (string, error) {
	var c net.Conn
	if err := netnstest.DoAt(nsPath, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 3*time.Second)
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// unmountUnder unmounts the namespaces left under dir, so that the test's
// temporary directory can be removed.
func unmountUnder(t testing.TB, dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if err := unix.Unmount(p, unix.MNT_DETACH); err == nil {
			t.Errorf("namespace %s was left mounted", p)
		}
	}
}

// testWriter sends a helper's stderr to the test log.
type testWriter struct {
	t      testing.TB
	prefix string
}

func (w *testWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.t.Log(w.prefix + l)
	}
	return len(p), nil
}
