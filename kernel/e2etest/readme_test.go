package e2etest

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoalhq/shoal/kernel/clustertest"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// The README's example images, packed as `make images` packs them.
const (
	helloV1 = "shoal.local/hello:1"
	helloV2 = "shoal.local/hello:2"
)

// readmeSubnet is the subnet of the README's network "app". The README
// lets IPAM choose one from its default pool; this test names one (the
// README's --subnet) away from that pool and from the other tests' subnets,
// since a `make run` node or another test may hold a bridge on this host.
const readmeSubnet = "10.217.0.0/16"

// TestREADMEFlow runs the commands of README.md's "Using it" block in
// order, through the real CLI against a real node with real containers of
// the README's example image, and checks what each prints and its exit
// status, as a user (or a script) relies on them: IDs, names, replica
// counts, the image after an update and a rollback, the HTTP answer of a
// task by its address and through a published port, the cluster's
// settings and join tokens. Along the way: `service logs -f` prints lines
// written after it started (those of an update's new tasks) and exits 0 on
// Ctrl-C; every command that prints something takes --format json (and
// Go templates, as the README shows them); unknown commands fail with
// "unknown command". Last, a worker joins with the README's worker token
// and a drain of the first node moves its tasks there.
func TestREADMEFlow(t *testing.T) {
	rf := &readmeFlow{n: startNode(t), began: time.Now()}
	rf.images(t)
	rf.unknownCommands(t)
	rf.version(t)
	rf.nodeLs(t)
	rf.createWeb(t)
	rf.scaleWeb(t)
	rf.logs(t)
	rf.followUpdate(t)
	rf.rollback(t)
	rf.api(t)
	rf.publish(t)
	rf.networkCluster(t)
	rf.joinToken(t)
	rf.workerJoins(t)
	rf.drain(t)
	rf.reactivate(t)
	rf.step(t, "done")
}

// readmeFlow is what the steps of TestREADMEFlow share: the node, and what
// one step learned that a later one checks against. Each step is a method
// that runs a few of the README's commands, in the README's order.
type readmeFlow struct {
	n     *node
	began time.Time
	// tars are the README's images, by reference, to import on a worker.
	tars map[string]string
	// managerID is the first node's; workerID the worker's that joins.
	managerID, workerID string
	webID               string
	// webTasks are web's running tasks, as the last scale left them.
	webTasks []*objectv1.Task
	netID    string
	// workerToken is the worker token the worker joined with.
	workerToken string
	// procs are hello's processes on the first node before the drain.
	procs map[string]proc
}

// step logs the start of a step, with the time since the test began.
func (rf *readmeFlow) step(t *testing.T, what string) {
	t.Helper()
	t.Logf("== %s (at %s)", what, time.Since(rf.began).Round(time.Millisecond))
}

// images packs the README's images and imports them on the node.
func (rf *readmeFlow) images(t *testing.T) {
	t.Helper()
	n := rf.n
	rf.step(t, "make images: pack examples/hello as the README's images")
	rf.tars = helloImages(t)
	for _, ref := range []string{helloV1, helloV2} {
		importImage(t, n.bin, n.config, rf.tars[ref], ref)
	}
}

// unknownCommands checks that unknown commands fail and a group alone prints its help.
func (rf *readmeFlow) unknownCommands(t *testing.T) {
	t.Helper()
	n := rf.n
	rf.step(t, "unknown commands fail")
	for _, args := range [][]string{
		{"foo"},
		{"service", "rollbak", "web"},
		{"service", "rolback"}, // the README's example
		{"secrets", "create", "x"},
		{"help", "foo"},
	} {
		r := n.cli(args...)
		if r.code != 1 || !strings.Contains(r.stderr, "unknown command") || r.stdout != "" {
			t.Errorf("shoal %s: exit %d, stdout %q, stderr %q; want exit 1 with \"unknown command\" on stderr and nothing on stdout",
				strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
	if r := n.cli("service", "rollbak", "web"); !strings.Contains(r.stderr, "rollback") {
		t.Errorf("shoal service rollbak: stderr %q does not suggest rollback", r.stderr)
	}
	// A group without a command prints its help and succeeds, as docker's.
	if r := n.cli("service"); r.code != 0 || !strings.Contains(r.stdout, "Usage:") {
		t.Errorf("shoal service: exit %d, stdout %q; want its help and exit 0", r.code, r.stdout)
	}
}

// version checks shoal version, as text and as JSON.
func (rf *readmeFlow) version(t *testing.T) {
	t.Helper()
	n := rf.n
	rf.step(t, "version")
	if out := n.ok(t, "version"); !strings.HasPrefix(out, "shoal ") {
		t.Errorf("shoal version printed %q, want \"shoal VERSION GO OS/ARCH\"", out)
	}
	var version struct {
		Version   string `json:"version"`
		GoVersion string `json:"go_version"`
		OS        string `json:"os"`
		Arch      string `json:"arch"`
	}
	decodeJSON(t, "version --format json", n.ok(t, "version", "--format", "json"), &version)
	if version.Version == "" || !strings.HasPrefix(version.GoVersion, "go") || version.OS != "linux" || version.Arch == "" {
		t.Errorf("version --format json: %+v", version)
	}
}

// nodeLs checks the one node in node ls and node inspect, and keeps its ID.
func (rf *readmeFlow) nodeLs(t *testing.T) {
	t.Helper()
	n := rf.n
	rf.step(t, "shoal node ls")
	nodes := protoList[objectv1.Node](t, "node ls --format json", n.ok(t, "node", "ls", "--format", "json"))
	if len(nodes) != 1 || nodes[0].GetDescription().GetHostname() != "e2e" ||
		nodes[0].GetStatus().GetState() != objectv1.NodeState_NODE_STATE_READY || nodes[0].GetRole() != objectv1.NodeRole_NODE_ROLE_MANAGER {
		t.Fatalf("node ls --format json: %v, want the one ready manager e2e", nodes)
	}
	rf.managerID = nodes[0].GetId()
	if f := tableRow(t, "node ls", n.ok(t, "node", "ls"), "e2e"); f[0] != rf.managerID || f[2] != "ready" || f[3] != "active" || f[4] != "Leader" {
		t.Errorf("node ls: the row of e2e is %q, want %s ready active Leader", f, rf.managerID)
	}
	if out := n.ok(t, "node", "ls", "--format", "{{.id}} {{.description.hostname}}"); out != rf.managerID+" e2e\n" {
		t.Errorf("node ls --format '{{.id}} {{.description.hostname}}' printed %q", out)
	}
	if got := protoList[objectv1.Node](t, "node inspect e2e", n.ok(t, "node", "inspect", "e2e")); len(got) != 1 || got[0].GetId() != rf.managerID {
		t.Errorf("node inspect e2e: %v, want node %s", got, rf.managerID)
	}
}

// createWeb creates web with 3 replicas and checks service ls, a refused create, completion and service ps.
func (rf *readmeFlow) createWeb(t *testing.T) {
	t.Helper()
	n := rf.n
	rf.step(t, "shoal service create --name web --replicas 3 "+helloV1)
	out := n.ok(t, "service", "create", "--name", "web", "--replicas", "3", helloV1)
	rf.webID, _, _ = strings.Cut(out, "\n")
	if len(rf.webID) != 25 {
		t.Fatalf("service create printed %q, want the service's ID first", out)
	}
	rf.webTasks = waitTasks(t, n, "web", 3, helloV1)

	rf.step(t, "shoal service ls")
	waitServiceRow(t, n, "web", "3/3", helloV1)
	services := protoList[objectv1.Service](t, "service ls --format json", n.ok(t, "service", "ls", "--format", "json"))
	if len(services) != 1 || services[0].GetId() != rf.webID || services[0].GetSpec().GetReplicated().GetReplicas() != 3 {
		t.Errorf("service ls --format json: %v, want web (%s) with 3 replicas", services, rf.webID)
	}

	rf.step(t, "bad input is refused, every bad field named")
	if r := n.cli("service", "create", "--name", "api", "--replicas", "-1", ""); r.code != 1 || r.stdout != "" ||
		r.stderr != "Error: invalid argument:\n  spec.mode.replicated.replicas: must be between 0 and 100000, got -1\n  spec.task.container.image: is required\n" {
		t.Errorf("service create --name api --replicas -1 \"\": exit %d, stdout %q, stderr\n%s\nwant exit 1 and the README's error", r.code, r.stdout, r.stderr)
	}
	if out := n.ok(t, "service", "ls", "-q"); out != rf.webID+"\n" {
		t.Errorf("service ls -q after a refused create printed %q, want web's ID only", out)
	}

	rf.step(t, "shoal completion bash")
	if out := n.ok(t, "completion", "bash"); !strings.Contains(out, "bash completion") {
		t.Errorf("completion bash printed no bash completion script:\n%s", tail(out, 500))
	}
	// What the script asks the binary for when completing `shoal service
	// inspect <TAB>`: the services' names.
	if out := n.ok(t, "__complete", "service", "inspect", ""); !slices.ContainsFunc(strings.Split(out, "\n"), func(l string) bool { return strings.HasPrefix(l, "web") }) {
		t.Errorf("completing shoal service inspect offered\n%s\nwant web", out)
	}

	rf.step(t, "shoal service ps web")
	checkPsTable(t, n.ok(t, "service", "ps", "web"), 3, rf.webTasks, helloV1, "e2e")
}

// scaleWeb scales web to 5 and checks service ps with the README's template.
func (rf *readmeFlow) scaleWeb(t *testing.T) {
	t.Helper()
	n := rf.n
	rf.step(t, "shoal service scale web=5")
	out := n.ok(t, "service", "scale", "web=5")
	if first, _, _ := strings.Cut(out, "\n"); first != "web scaled to 5" {
		t.Errorf("service scale web=5 printed %q, want \"web scaled to 5\" first", out)
	}
	rf.webTasks = waitTasks(t, n, "web", 5, helloV1)
	waitServiceRow(t, n, "web", "5/5", helloV1)
	// The README's template.
	eventually(t, 30*time.Second, func(context.Context) error {
		out, err := n.run("service", "ps", "web", "--format", "{{.id}} {{.slot}} {{.status.state}}")
		if err != nil {
			return err
		}
		var want []string
		for _, task := range rf.webTasks {
			want = append(want, fmt.Sprintf("%s %d TASK_STATE_RUNNING", task.GetId(), task.GetSlot()))
		}
		if got := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); !sameSet(got, want) {
			return fmt.Errorf("service ps web --format '{{.id}} {{.slot}} {{.status.state}}' printed %q, want the lines %q", got, want)
		}
		return nil
	})
	// docker's {{.ID}} is {{.id}} here: an error naming the fields there.
	if r := n.cli("service", "ps", "web", "--format", "{{.ID}}"); r.code != 1 || !strings.Contains(r.stderr, `"ID"`) || !strings.Contains(r.stderr, " id,") {
		t.Errorf("service ps --format '{{.ID}}': exit %d, stderr %q; want exit 1 naming the fields, id among them", r.code, r.stderr)
	}
}

// logs checks service logs, with and without --tail, and task logs.
func (rf *readmeFlow) logs(t *testing.T) {
	t.Helper()
	n := rf.n
	rf.step(t, "shoal service logs web")
	eventually(t, 60*time.Second, func(context.Context) error {
		out, err := n.run("service", "logs", "web")
		if err != nil {
			return err
		}
		for _, task := range rf.webTasks {
			if want := logPrefix("web", task, "e2e") + " | " + greeting(task, "1") + "\n"; !strings.Contains(out, want) {
				return fmt.Errorf("service logs web printed no line %q:\n%s", want, out)
			}
		}
		return nil
	})
	out := n.ok(t, "service", "logs", "--tail", "1", "web")
	if lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); len(lines) != len(rf.webTasks) {
		t.Errorf("service logs --tail 1 web printed %d lines, want one per task (%d):\n%s", len(lines), len(rf.webTasks), out)
	}
	for _, task := range rf.webTasks {
		if !strings.Contains(out, logPrefix("web", task, "e2e")+" | "+greeting(task, "1")) {
			t.Errorf("service logs --tail 1 web printed no line of task %s:\n%s", task.GetId(), out)
		}
	}

	rf.step(t, "shoal task logs TASK")
	if out := n.ok(t, "task", "logs", rf.webTasks[0].GetId()); !strings.Contains(out, " | "+greeting(rf.webTasks[0], "1")+"\n") {
		t.Errorf("task logs %s printed no greeting:\n%s", rf.webTasks[0].GetId(), out)
	}
}

// followUpdate follows web's logs through an update to the second image.
func (rf *readmeFlow) followUpdate(t *testing.T) {
	t.Helper()
	n := rf.n
	rf.step(t, "shoal service logs -f web, then shoal service update --image "+helloV2+" web")
	follow := n.startLogs(t, "service", "logs", "-f", "--tail", "1", "web")
	// Following: it printed each task's last line.
	for _, task := range rf.webTasks {
		follow.waitContains(logPrefix("web", task, "e2e")+" | "+greeting(task, "1"), 60*time.Second)
	}
	out := n.ok(t, "service", "update", "--image", helloV2, "web")
	if first, _, _ := strings.Cut(out, "\n"); first != "web" {
		t.Errorf("service update printed %q, want \"web\" first", out)
	}
	// It returned once the update completed: the 5 new tasks run the new
	// image, the old ones are shut down.
	newTasks := waitTasks(t, n, "web", 5, helloV2)
	// The follow printed what the update's tasks wrote after it started:
	// the old tasks' goodbyes on stderr, the new tasks' greetings.
	for _, task := range rf.webTasks {
		follow.waitLine(false, logPrefix("web", task, "e2e")+" | "+task.GetId()+": got terminated, goodbye", 60*time.Second)
	}
	for _, task := range newTasks {
		follow.waitLine(true, logPrefix("web", task, "e2e")+" | "+greeting(task, "2"), 60*time.Second)
	}
	follow.interrupt()
	waitServiceRow(t, n, "web", "5/5", helloV2)
}

// rollback rolls web back, inspects it and removes it.
func (rf *readmeFlow) rollback(t *testing.T) {
	t.Helper()
	n := rf.n
	rf.step(t, "shoal service rollback web")
	svc := protoOne[objectv1.Service](t, "service rollback --format json", n.ok(t, "service", "rollback", "--format", "json", "web"))
	if svc.GetId() != rf.webID || svc.GetSpec().GetTask().GetContainer().GetImage() != helloV1 {
		t.Errorf("service rollback --format json printed service %s with image %s, want %s with %s",
			svc.GetId(), svc.GetSpec().GetTask().GetContainer().GetImage(), rf.webID, helloV1)
	}
	waitTasks(t, n, "web", 5, helloV1)
	waitServiceRow(t, n, "web", "5/5", helloV1)

	rf.step(t, "shoal service inspect web")
	inspected := protoList[objectv1.Service](t, "service inspect web", n.ok(t, "service", "inspect", "web"))
	if len(inspected) != 1 {
		t.Fatalf("service inspect web: %d services", len(inspected))
	}
	if s := inspected[0]; s.GetId() != rf.webID || s.GetSpec().GetAnnotations().GetName() != "web" ||
		s.GetSpec().GetReplicated().GetReplicas() != 5 || s.GetSpec().GetTask().GetContainer().GetImage() != helloV1 ||
		s.GetPreviousSpec().GetTask().GetContainer().GetImage() != helloV2 ||
		s.GetUpdateStatus().GetState() != objectv1.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED {
		// service rollback's rollout is a rollback (paced by the
		// rollback config), and its status says so once it completed.
		t.Errorf("service inspect web: %v\nwant web (%s), 5 replicas of %s, previous spec %s, rollback completed", s, rf.webID, helloV1, helloV2)
	}
	if out := n.ok(t, "service", "inspect", "--pretty", "web"); !strings.Contains(out, "Image:") || !strings.Contains(out, helloV1) {
		t.Errorf("service inspect --pretty web printed\n%s", out)
	}

	rf.step(t, "shoal service rm web")
	if out := n.ok(t, "service", "rm", "web"); out != "web\n" {
		t.Errorf("service rm web printed %q, want \"web\"", out)
	}
	if out := n.ok(t, "service", "ls", "-q"); out != "" {
		t.Errorf("service ls -q after service rm printed %q", out)
	}
}

// api creates the network app and the service api on it, and reaches api by address and by name.
func (rf *readmeFlow) api(t *testing.T) {
	t.Helper()
	n := rf.n
	rf.step(t, "shoal network create app")
	out := n.ok(t, "network", "create", "--subnet", readmeSubnet, "app")
	rf.netID = strings.TrimSpace(out)
	if len(rf.netID) != 25 {
		t.Fatalf("network create printed %q, want the network's ID", out)
	}

	rf.step(t, "shoal service create --name api --network app --replicas 2 --env PORT=8080 "+helloV1)
	out = n.ok(t, "service", "create", "--name", "api", "--network", "app", "--replicas", "2", "--env", "PORT=8080", helloV1)
	if id, _, _ := strings.Cut(out, "\n"); len(id) != 25 {
		t.Errorf("service create printed %q, want the service's ID first", out)
	}
	apiTasks := waitTasks(t, n, "api", 2, helloV1)
	for _, task := range apiTasks {
		nets := task.GetNetworks()
		if len(nets) != 1 || nets[0].GetNetworkId() != rf.netID {
			t.Fatalf("task %s of api has networks %v, want one on app (%s)", task.GetId(), nets, rf.netID)
		}
		addr, err := netip.ParsePrefix(nets[0].GetAddr())
		if err != nil || addr.Bits() != 16 || !netip.MustParsePrefix(readmeSubnet).Contains(addr.Addr()) {
			t.Fatalf("task %s of api has address %q, want one of %s with its prefix length", task.GetId(), nets[0].GetAddr(), readmeSubnet)
		}
		// curl http://ADDR:8080/
		httpAnswers(t, fmt.Sprintf("http://%s/", netip.AddrPortFrom(addr.Addr(), 8080)), greeting(task, "1")+"\n")
	}

	rf.step(t, "shoal service create --name client --network app "+helloV1)
	n.ok(t, "service", "create", "--name", "client", "--network", "app", helloV1)
	waitTasks(t, n, "client", 1, helloV1)
	rf.step(t, "shoal task exec client.1 -- /prog get http://api:8080/")
	// By name, through api's VIP: every answer is one of api's tasks.
	answered := map[string]int{}
	for range 10 {
		out := strings.TrimSpace(n.ok(t, "task", "exec", "client.1", "--", "/prog", "get", "http://api:8080/"))
		if !slices.ContainsFunc(apiTasks, func(tk *objectv1.Task) bool { return out == greeting(tk, "1") }) {
			t.Errorf("task exec client.1 -- /prog get http://api:8080/ printed %q, want the greeting of one of api's tasks", out)
		}
		answered[out]++
	}
	t.Logf("api through its VIP, 10 requests from client.1: %v", answered)
}

// publish publishes a port of the service pub and updates pub behind it.
func (rf *readmeFlow) publish(t *testing.T) {
	t.Helper()
	n := rf.n
	rf.step(t, "shoal service create --name pub --network app --env PORT=8080 --publish PORT:8080 "+helloV1)
	port := clustertest.FreePorts(t, 1)[0]
	svc := protoOne[objectv1.Service](t, "service create --format json", n.ok(t, "service", "create", "--format", "json",
		"--name", "pub", "--network", "app", "--env", "PORT=8080", "--publish", fmt.Sprintf("%d:8080", port), helloV1))
	if ports := svc.GetSpec().GetEndpoint().GetPorts(); svc.GetSpec().GetAnnotations().GetName() != "pub" || len(ports) != 1 ||
		ports[0].GetPublishedPort() != uint32(port) || ports[0].GetTargetPort() != 8080 {
		t.Errorf("service create --format json printed %v, want pub publishing %d:8080", svc, port)
	}
	pubTasks := waitTasks(t, n, "pub", 1, helloV1)
	pubURL := fmt.Sprintf("http://127.0.0.1:%d/", port)
	httpAnswers(t, pubURL, greeting(pubTasks[0], "1")+"\n")
	if f := waitServiceRow(t, n, "pub", "1/1", helloV1); len(f) < 6 || f[5] != fmt.Sprintf("*:%d->8080/tcp", port) {
		t.Errorf("service ls: the row of pub is %q, want its port *:%d->8080/tcp", f, port)
	}
	// An update through --format json, its progress on stderr: stop-first,
	// the new task starts once the old one has stopped and given the
	// published port back, and answers on it with the new greeting.
	svc = protoOne[objectv1.Service](t, "service update --format json", n.ok(t, "service", "update", "--format", "json",
		"--env-add", "GREETING=hey", "--update-monitor", "1s", "pub"))
	if env := svc.GetSpec().GetTask().GetContainer().GetEnv(); !slices.Equal(env, []string{"PORT=8080", "GREETING=hey"}) {
		t.Errorf("service update --format json printed env %q, want PORT=8080 GREETING=hey", env)
	}
	for _, task := range waitTasks(t, n, "pub", 1, helloV1) {
		if task.GetId() == pubTasks[0].GetId() {
			t.Errorf("task %s of pub runs on after the update", task.GetId())
		}
		httpAnswers(t, pubURL, "hey from "+task.GetId()+" (v1)\n")
	}
}

// networkCluster checks network ls and inspect, cluster inspect and cluster update.
func (rf *readmeFlow) networkCluster(t *testing.T) {
	t.Helper()
	n := rf.n
	rf.step(t, "shoal network ls")
	if f := tableRow(t, "network ls", n.ok(t, "network", "ls"), "app"); f[0] != rf.netID[:12] || f[2] != readmeSubnet || f[3] != "/24" || f[4] != "1" {
		t.Errorf("network ls: the row of app is %q, want %s app %s /24 1", f, rf.netID[:12], readmeSubnet)
	}
	for _, args := range [][]string{{"network", "ls", "--format", "json"}, {"network", "inspect", "app"}} {
		nets := protoList[objectv1.Network](t, strings.Join(args, " "), n.ok(t, args...))
		if len(nets) != 1 || nets[0].GetId() != rf.netID || nets[0].GetSubnet() != readmeSubnet {
			t.Errorf("%s: %v, want app (%s) on %s", strings.Join(args, " "), nets, rf.netID, readmeSubnet)
		}
	}

	rf.step(t, "shoal cluster inspect")
	cl := protoOne[objectv1.Cluster](t, "cluster inspect", n.ok(t, "cluster", "inspect"))
	if cl.GetId() == "" || cl.GetRootCa().GetJoinTokens() != nil || len(cl.GetRootCa().GetKeyPem()) > 0 {
		t.Errorf("cluster inspect: %v, want the cluster without its join tokens and CA key", cl)
	}

	rf.step(t, "shoal cluster update --heartbeat-period 10s")
	if out := n.ok(t, "cluster", "update", "--heartbeat-period", "10s"); out != "Cluster updated.\n" {
		t.Errorf("cluster update printed %q", out)
	}
	if out := n.ok(t, "cluster", "inspect", "--format", "{{.spec.dispatcher.heartbeat_period}}"); out != "10s\n" {
		t.Errorf("the heartbeat period after cluster update --heartbeat-period 10s is %q", out)
	}
	cl = protoOne[objectv1.Cluster](t, "cluster update --format json", n.ok(t, "cluster", "update", "--heartbeat-period", "5s", "--format", "json"))
	if got := cl.GetSpec().GetDispatcher().GetHeartbeatPeriod().AsDuration(); got != 5*time.Second || cl.GetRootCa().GetJoinTokens() != nil {
		t.Errorf("cluster update --format json: heartbeat period %v, join tokens %v; want 5s and none", got, cl.GetRootCa().GetJoinTokens())
	}
}

// joinToken checks join-token manager and the CLI over tcp:// with the manager's certificate.
func (rf *readmeFlow) joinToken(t *testing.T) {
	t.Helper()
	n := rf.n
	rf.step(t, "shoal join-token manager")
	managerAddr := n.managerListenAddr(t)
	out := n.ok(t, "join-token", "manager")
	var tok struct {
		Role    string   `json:"role"`
		Token   string   `json:"token"`
		Addrs   []string `json:"addrs"`
		Rotated bool     `json:"rotated"`
	}
	decodeJSON(t, "join-token manager --format json", n.ok(t, "join-token", "manager", "--format", "json"), &tok)
	if tok.Role != "manager" || !strings.HasPrefix(tok.Token, "SHL1-") || !slices.Equal(tok.Addrs, []string{managerAddr}) || tok.Rotated {
		t.Errorf("join-token manager --format json: %+v, want the manager token and addrs [%s]", tok, managerAddr)
	}
	if want := fmt.Sprintf("[join]\naddrs = [%q]\ntoken = %q\n", managerAddr, tok.Token); !strings.Contains(out, want) {
		t.Errorf("join-token manager printed\n%s\nwant the [join] section\n%s", out, want)
	}

	rf.step(t, "--host tcp://MANAGER with the manager's certificate")
	certs := filepath.Join(n.dir, "data", "certificates")
	if out := n.ok(t, "--host", "tcp://"+managerAddr, "--tls-cert", filepath.Join(certs, "node.crt"),
		"--tls-key", filepath.Join(certs, "node.key"), "--tls-ca", filepath.Join(certs, "root.crt"), "node", "ls", "-q"); out != rf.managerID+"\n" {
		t.Errorf("node ls -q over tcp:// printed %q, want %s", out, rf.managerID)
	}
}

// workerJoins removes the services and the network, runs hello on the first node, and joins a worker with the README's worker config.
func (rf *readmeFlow) workerJoins(t *testing.T) {
	t.Helper()
	n := rf.n
	// Worker nodes, and the drain paragraph.
	rf.step(t, "a service on the first node, then a worker joins")
	n.ok(t, "service", "rm", "client")
	removed := protoList[objectv1.Service](t, "service rm --format json", n.ok(t, "service", "rm", "--format", "json", "api", "pub"))
	if len(removed) != 2 || removed[0].GetSpec().GetAnnotations().GetName() != "api" || removed[1].GetSpec().GetAnnotations().GetName() != "pub" {
		t.Errorf("service rm --format json api pub printed %v, want the two services", removed)
	}
	// The network is removed once the services' tasks have stopped; until
	// then, network rm fails and says so.
	var rmOut string
	eventually(t, 60*time.Second, func(context.Context) error {
		r := n.cli("network", "rm", "--format", "json", "app")
		if r.code != 0 {
			return fmt.Errorf("network rm app: exit %d: %s", r.code, r.stderr)
		}
		rmOut = r.stdout
		return nil
	})
	if nets := protoList[objectv1.Network](t, "network rm --format json", rmOut); len(nets) != 1 || nets[0].GetId() != rf.netID {
		t.Errorf("network rm --format json app printed %v, want network %s", nets, rf.netID)
	}
	n.ok(t, "service", "create", "--name", "hello", "--replicas", "3", helloV1)
	before := waitTasks(t, n, "hello", 3, helloV1)
	for _, task := range before {
		if task.GetNodeId() != rf.managerID {
			t.Fatalf("task %s of hello is on node %s with one node in the cluster", task.GetId(), task.GetNodeId())
		}
	}
	rf.procs = map[string]proc{}
	for _, task := range before {
		p, ok := readProc(int(task.GetStatus().GetPid()))
		if !ok {
			t.Fatalf("task %s reports pid %d, which does not run", task.GetId(), task.GetStatus().GetPid())
		}
		rf.procs[task.GetId()] = p
	}

	// The README's worker config: its [join] is what join-token worker
	// prints, with the token of join-token worker -q.
	rf.workerToken = strings.TrimSpace(n.ok(t, "join-token", "worker", "-q"))
	join := n.ok(t, "join-token", "worker")
	if i := strings.Index(join, "[join]"); i < 0 || !strings.Contains(join, fmt.Sprintf("token = %q", rf.workerToken)) {
		t.Fatalf("join-token worker printed\n%s\nwant a [join] section with the token of join-token worker -q (%s)", join, rf.workerToken)
	} else {
		join = join[i:]
	}
	w := startWorker(t, n, "e2e-w", join)
	eventually(t, 90*time.Second, func(context.Context) error {
		out, err := n.run("node", "ls", "--format", "json")
		if err != nil {
			return err
		}
		var nodes []*objectv1.Node
		if err := protoListErr(out, &nodes); err != nil {
			return err
		}
		for _, nd := range nodes {
			if nd.GetDescription().GetHostname() == "e2e-w" && nd.GetStatus().GetState() == objectv1.NodeState_NODE_STATE_READY &&
				nd.GetRole() == objectv1.NodeRole_NODE_ROLE_WORKER && nd.GetDescription().GetExecutor() == executorName {
				rf.workerID = nd.GetId()
				return nil
			}
		}
		return fmt.Errorf("no ready worker e2e-w: %v", nodes)
	})
	importImage(t, w.bin, w.config, rf.tars[helloV1], helloV1)
	if f := tableRow(t, "node ls", n.ok(t, "node", "ls"), "e2e-w"); f[0] != rf.workerID || f[2] != "ready" || f[3] != "active" {
		t.Errorf("node ls: the row of e2e-w is %q, want %s ready active", f, rf.workerID)
	}
}

// drain drains the first node and checks that hello's tasks move to the worker.
func (rf *readmeFlow) drain(t *testing.T) {
	t.Helper()
	n := rf.n
	rf.step(t, "shoal node update --availability drain e2e")
	nd := protoOne[objectv1.Node](t, "node update --format json", n.ok(t, "node", "update", "--availability", "drain", "--format", "json", "e2e"))
	if nd.GetId() != rf.managerID || nd.GetSpec().GetAvailability() != objectv1.NodeAvailability_NODE_AVAILABILITY_DRAIN {
		t.Errorf("node update --availability drain --format json: %v, want node %s drained", nd, rf.managerID)
	}
	// Its tasks are shut down there and replaced on the worker.
	eventually(t, 90*time.Second, func(context.Context) error {
		tasks, err := n.ps("hello")
		if err != nil {
			return err
		}
		moved := 0
		for _, task := range tasks {
			st := task.GetStatus().GetState()
			switch {
			case task.GetNodeId() == rf.managerID:
				if task.GetDesiredState() != objectv1.TaskState_TASK_STATE_SHUTDOWN || st < objectv1.TaskState_TASK_STATE_COMPLETE {
					return fmt.Errorf("task %s on the drained node is %s, desired %s: %s", task.GetId(), st, task.GetDesiredState(), summary(tasks))
				}
			case task.GetNodeId() == rf.workerID && task.GetDesiredState() == objectv1.TaskState_TASK_STATE_RUNNING &&
				st == objectv1.TaskState_TASK_STATE_RUNNING && task.GetStatus().GetPid() > 0:
				moved++
			}
		}
		if moved != 3 {
			return fmt.Errorf("%d of 3 tasks run on the worker: %s", moved, summary(tasks))
		}
		return nil
	})
	for id, p := range rf.procs {
		if now, ok := readProc(p.pid); ok && now.start == p.start {
			t.Errorf("task %s was shut down by the drain, but its process %d runs on", id, p.pid)
		}
	}
	if f := tableRow(t, "node ls", n.ok(t, "node", "ls"), "e2e"); f[3] != "drain" {
		t.Errorf("node ls: the row of e2e is %q, want it drained", f)
	}
	out := n.ok(t, "service", "ps", "hello")
	t.Logf("service ps hello after the drain:\n%s", out)
	checkPsTable(t, out, 3, nil, helloV1, "e2e-w")
}

// reactivate reactivates the first node, scales hello onto it, and rotates the worker token.
func (rf *readmeFlow) reactivate(t *testing.T) {
	t.Helper()
	n := rf.n
	rf.step(t, "shoal node update --availability active e2e")
	if out := n.ok(t, "node", "update", "--availability", "active", "e2e"); out != "e2e\n" {
		t.Errorf("node update --availability active e2e printed %q", out)
	}
	if out := n.ok(t, "node", "inspect", "e2e", "--format", "{{.spec.availability}}"); out != "NODE_AVAILABILITY_ACTIVE\n" {
		t.Errorf("node inspect e2e --format '{{.spec.availability}}' printed %q", out)
	}
	// It takes new tasks again: the spread puts a scale's new tasks there,
	// where the service has none.
	scaled := protoList[objectv1.Service](t, "service scale --format json", n.ok(t, "service", "scale", "--format", "json", "hello=5"))
	if len(scaled) != 1 || scaled[0].GetSpec().GetReplicated().GetReplicas() != 5 {
		t.Errorf("service scale --format json printed %v, want hello with 5 replicas", scaled)
	}
	onWorker, onManager := 0, 0
	for _, task := range waitTasks(t, n, "hello", 5, helloV1) {
		switch task.GetNodeId() {
		case rf.workerID:
			onWorker++
		case rf.managerID:
			onManager++
		}
	}
	if onWorker != 3 || onManager != 2 {
		t.Errorf("after scaling to 5, %d tasks run on the worker and %d on the reactivated node, want 3 and 2 (the moved tasks do not move back)", onWorker, onManager)
	}
	rf.step(t, "shoal join-token worker --rotate")
	out := n.ok(t, "join-token", "worker", "--rotate")
	rotated := strings.TrimSpace(n.ok(t, "join-token", "worker", "-q"))
	if !strings.HasPrefix(out, "Successfully rotated worker join token.\n") || rotated == rf.workerToken || !strings.Contains(out, fmt.Sprintf("token = %q", rotated)) {
		t.Errorf("join-token worker --rotate printed\n%s\nwant the new token (%s, was %s)", out, rotated, rf.workerToken)
	}
	// The worker that joined with the old token is not affected.
	if f := tableRow(t, "node ls", n.ok(t, "node", "ls"), "e2e-w"); f[2] != "ready" {
		t.Errorf("node ls: the row of e2e-w after rotating the worker token is %q, want it ready", f)
	}
}
