package netnstest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// stackImage is the image examples/stack/compose.yml runs.
const stackImage = "shoal.local/hello:1"

// TestStackDeploy deploys examples/stack (a web service reaching a
// database-like service by name with a secret, a config, a named volume
// and a health check) through `shoal stack deploy` on the lab's two
// workers: web answers on both nodes through the routing mesh and in its
// tasks, with the config's greeting and db's visit counter (db reached by
// name, with the secret); a redeploy that changes db only replaces db's
// task and keeps web's, the counter continuing on the named volume; a
// redeploy of the same files changes nothing; `stack rm` removes every
// object the stack made.
func TestStackDeploy(t *testing.T) {
	c := startCluster(t, 2)
	sr := &stackRun{c: c, l: c.lab}
	root := sr.importImage(t)
	sr.copyExample(t, root)
	sr.deploy(t)
	running := sr.tasks(t, "the stack's tasks running, db healthy")
	db, webNodes := sr.checkPlacement(t, running)
	sr.checkSecretAndConfig(t, db, running)

	// Web answers with the config's greeting and db's visit counter (db
	// by name, with the secret): in each web task, one per node, and
	// through the routing mesh on each node's LAN address.
	for _, w := range sr.c.workers {
		sr.webGet(t, webNodes[sr.c.nodeIDs[w.name]], "on "+w.name)
		sr.meshGet(t, w.addr, "(the routing mesh, from the manager's namespace)")
	}
	after := sr.redeployDB(t, db, running, webNodes)
	sr.redeploySame(t, after)
	sr.remove(t)
}

// stackRun is what the steps of TestStackDeploy share: the cluster, the
// example's compose file as edited and its data, the stack's service IDs,
// and the last visit count db gave.
type stackRun struct {
	c *cluster
	l *lab
	// compose is the edited compose file; password and greeting the data
	// of its secret and its config.
	compose, password, greeting string
	webID, dbID                 string
	lastVisit                   int
}

// cli runs the CLI against the manager.
func (sr *stackRun) cli(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, sr.l.bin, append([]string{"--host", "unix://" + sr.c.socket}, args...)...).CombinedOutput()
	return string(out), err
}

// mustCLI runs the CLI and returns its output, failing t unless it succeeds.
func (sr *stackRun) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := sr.cli(args...)
	if err != nil {
		sr.l.dumpLogs()
		t.Fatalf("shoal %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// importImage packs the example's image, as `make images` packs it, and
// imports it on both workers; it returns the repository's root.
func (sr *stackRun) importImage(t *testing.T) string {
	t.Helper()
	// The example's image, as `make images` packs it, on both workers.
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	tar := filepath.Join(sr.l.dir, "hello-1.tar")
	mk := exec.Command("go", "run", "./internal/mkimage", "-name", stackImage, "-env", "HELLO_VERSION=1", "-o", tar, "./examples/hello")
	mk.Dir = root
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("go run ./internal/mkimage: %v\n%s", err, out)
	}
	for _, w := range sr.c.workers {
		sr.l.importImage(w, stackImage, tar)
	}
	return root
}

// copyExample copies the example to edit it: db pinned to w1 (its named
// volume is local to a node: its replacement must land where the volume
// is), web one task per node.
func (sr *stackRun) copyExample(t *testing.T, root string) {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"compose.yml", "db_password.txt", "greeting.txt"} {
		b, err := os.ReadFile(filepath.Join(root, "examples", "stack", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sr.compose = filepath.Join(dir, "compose.yml")
	editFile(t, sr.compose, "      replicas: 2\n", "      replicas: 2\n      placement:\n        max_replicas_per_node: 1\n")
	editFile(t, sr.compose, "      replicas: 1\n", "      replicas: 1\n      placement:\n        constraints: [node.hostname == "+sr.c.workers[0].name+"]\n")
	sr.password = strings.TrimSpace(readFile(t, filepath.Join(dir, "db_password.txt")))
	sr.greeting = strings.TrimSpace(readFile(t, filepath.Join(dir, "greeting.txt")))
}

// deploy deploys the stack and keeps its services' IDs.
func (sr *stackRun) deploy(t *testing.T) {
	t.Helper()
	out := sr.mustCLI(t, "stack", "deploy", "-c", sr.compose, "demo")
	t.Logf("stack deploy:\n%s", out)
	for _, want := range []string{
		"Creating network demo_default", "Creating secret demo_db_password", "Creating config demo_greeting",
		"Creating service demo_db", "Creating service demo_web",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stack deploy printed no %q", want)
		}
	}
	if out := sr.mustCLI(t, "stack", "ls"); !regexp.MustCompile(`(?m)^demo\s+2\s*$`).MatchString(out) {
		t.Errorf("stack ls does not list demo with 2 services:\n%s", out)
	}
	if out := sr.mustCLI(t, "stack", "services", "demo"); !strings.Contains(out, "demo_web") || !strings.Contains(out, "demo_db") {
		t.Errorf("stack services demo lacks demo_web or demo_db:\n%s", out)
	}

	services := map[string]string{} // name: ID
	for _, s := range listJSON(t, sr.mustCLI(t, "service", "ls", "--format", "json"), func() *objectv1.Service { return &objectv1.Service{} }) {
		services[s.GetSpec().GetAnnotations().GetName()] = s.GetId()
	}
	sr.webID, sr.dbID = services["demo_web"], services["demo_db"]
	if sr.webID == "" || sr.dbID == "" {
		t.Fatalf("service ls has no demo_web or demo_db: %v", services)
	}
}

// tasks waits until the stack runs web's 2 tasks and a healthy db task,
// each with no other task meant to run, and returns the running ones by
// service ID.
func (sr *stackRun) tasks(t *testing.T, what string) map[string][]*objectv1.Task {
	t.Helper()
	var running map[string][]*objectv1.Task
	sr.l.eventually(4*time.Minute, what, func(ctx context.Context) error {
		out, err := sr.cli("stack", "ps", "demo", "--format", "json")
		if err != nil {
			return fmt.Errorf("stack ps: %v: %s", err, out)
		}
		tasks, err := parseJSONList(out, func() *objectv1.Task { return &objectv1.Task{} })
		if err != nil {
			return err
		}
		running = map[string][]*objectv1.Task{}
		var states []string
		for _, tk := range tasks {
			st := tk.GetStatus()
			states = append(states, fmt.Sprintf("%s(%s) %s/%s %s %s", tk.GetId(), tk.GetServiceId(), st.GetState(), tk.GetDesiredState(), st.GetHealth(), st.GetErr()))
			if tk.GetDesiredState() == objectv1.TaskState_TASK_STATE_RUNNING {
				if st.GetState() != objectv1.TaskState_TASK_STATE_RUNNING {
					return fmt.Errorf("a task meant to run does not yet: %v", states)
				}
				running[tk.GetServiceId()] = append(running[tk.GetServiceId()], tk)
			}
		}
		if len(running[sr.webID]) != 2 || len(running[sr.dbID]) != 1 {
			return fmt.Errorf("want 2 web and 1 db tasks running: %v", states)
		}
		if h := running[sr.dbID][0].GetStatus().GetHealth(); h != objectv1.TaskHealth_TASK_HEALTH_HEALTHY {
			return fmt.Errorf("db's task is %s, want healthy: %v", h, states)
		}
		return nil
	})
	return running
}

// checkPlacement checks that db runs on w1 and web on each worker, and
// returns db's task and web's by node ID.
func (sr *stackRun) checkPlacement(t *testing.T, running map[string][]*objectv1.Task) (db *objectv1.Task, webNodes map[string]*objectv1.Task) {
	t.Helper()
	db = running[sr.dbID][0]
	if db.GetNodeId() != sr.c.nodeIDs[sr.c.workers[0].name] {
		t.Errorf("db runs on %s, want %s (%s) as its constraint says", db.GetNodeId(), sr.c.workers[0].name, sr.c.nodeIDs[sr.c.workers[0].name])
	}
	webNodes = map[string]*objectv1.Task{}
	for _, tk := range running[sr.webID] {
		webNodes[tk.GetNodeId()] = tk
	}
	if webNodes[sr.c.nodeIDs[sr.c.workers[0].name]] == nil || webNodes[sr.c.nodeIDs[sr.c.workers[1].name]] == nil {
		t.Fatalf("web's tasks run on %v, want one on each of w1 %s and w2 %s", slices.Collect(maps.Keys(webNodes)), sr.c.nodeIDs[sr.c.workers[0].name], sr.c.nodeIDs[sr.c.workers[1].name])
	}
	return db, webNodes
}

// checkSecretAndConfig checks the secret in db's task, the config in web's.
func (sr *stackRun) checkSecretAndConfig(t *testing.T, db *objectv1.Task, running map[string][]*objectv1.Task) {
	t.Helper()
	if out := sr.mustCLI(t, "task", "exec", db.GetId(), "--", "/prog", "cat", "/run/secrets/db_password"); strings.TrimSpace(out) != sr.password {
		t.Errorf("db's /run/secrets/db_password holds %q, want %q", out, sr.password)
	}
	for _, tk := range running[sr.webID] {
		if out := sr.mustCLI(t, "task", "exec", tk.GetId(), "--", "/prog", "cat", "/etc/hello/greeting.txt"); strings.TrimSpace(out) != sr.greeting {
			t.Errorf("web task %s's /etc/hello/greeting.txt holds %q, want %q", tk.GetId(), out, sr.greeting)
		}
	}
}

// checkReply checks a reply of web: the config's greeting and db's visit
// counter, above the last one.
func (sr *stackRun) checkReply(t *testing.T, where, reply string) {
	t.Helper()
	t.Logf("%s: %s", where, strings.TrimSpace(reply))
	if !strings.Contains(reply, sr.greeting) {
		t.Errorf("%s answered %q: no greeting %q (the config)", where, reply, sr.greeting)
	}
	n := visitOf(reply)
	if n == 0 {
		t.Errorf("%s answered %q: no visit count from db", where, reply)
		return
	}
	if n <= sr.lastVisit {
		t.Errorf("%s answered visit %d, after visit %d: db's counter went back", where, n, sr.lastVisit)
	}
	sr.lastVisit = n
}

// webGet gets web's answer inside its task tk.
func (sr *stackRun) webGet(t *testing.T, tk *objectv1.Task, where string) {
	t.Helper()
	var reply string
	sr.l.eventually(2*time.Minute, "web answers in task "+tk.GetId()+" "+where, func(ctx context.Context) error {
		out, err := sr.cli("task", "exec", tk.GetId(), "--", "/prog", "get", "http://localhost:8080/")
		if err != nil {
			return fmt.Errorf("task exec %s -- /prog get: %v: %s", tk.GetId(), err, out)
		}
		reply = out
		return nil
	})
	sr.checkReply(t, "web task "+tk.GetId()+" "+where, reply)
}

// meshGet gets web's answer through the routing mesh on addr, from the
// manager's namespace.
func (sr *stackRun) meshGet(t *testing.T, addr, where string) {
	t.Helper()
	var reply string
	sr.l.eventually(2*time.Minute, "web answers on "+addr+":8082 "+where, func(ctx context.Context) error {
		var err error
		reply, err = httpGetFrom(ctx, sr.c.mns, addr, 8082)
		return err
	})
	sr.checkReply(t, addr+":8082 "+where, reply)
}

// redeployDB redeploys with db's environment changed: db's task is replaced
// (on w1, where its volume is), web's are left alone, the count goes on. It
// returns the running tasks after.
func (sr *stackRun) redeployDB(t *testing.T, db *objectv1.Task, running map[string][]*objectv1.Task, webNodes map[string]*objectv1.Task) map[string][]*objectv1.Task {
	t.Helper()
	// Redeploy with db's environment changed: db's task is replaced (on
	// w1, where its volume is), web's are left alone, the count goes on.
	editFile(t, sr.compose, "      STATE_DIR: /data\n", "      STATE_DIR: /data\n      REVISION: \"2\"\n")
	out := sr.mustCLI(t, "stack", "deploy", "-c", sr.compose, "demo")
	t.Logf("stack deploy (db changed):\n%s", out)
	for _, want := range []string{"Updating service demo_db", "Service demo_web is unchanged"} {
		if !strings.Contains(out, want) {
			t.Errorf("stack deploy with db changed printed no %q", want)
		}
	}
	for _, bad := range []string{"Updating service demo_web", "Creating"} {
		if strings.Contains(out, bad) {
			t.Errorf("stack deploy with db changed printed %q", bad)
		}
	}
	var after map[string][]*objectv1.Task
	sr.l.eventually(4*time.Minute, "db's task replaced", func(ctx context.Context) error {
		after = sr.tasks(t, "the stack's tasks running after the redeploy")
		if after[sr.dbID][0].GetId() == db.GetId() {
			return fmt.Errorf("db still runs its old task %s", db.GetId())
		}
		return nil
	})
	if ids, want := taskIDs(after[sr.webID]), taskIDs(running[sr.webID]); !slices.Equal(ids, want) {
		t.Errorf("web's running tasks after a redeploy that changed db only: %v, want the same as before: %v", ids, want)
	}
	db2 := after[sr.dbID][0]
	if db2.GetNodeId() != sr.c.nodeIDs[sr.c.workers[0].name] {
		t.Errorf("db's new task runs on %s, want %s", db2.GetNodeId(), sr.c.nodeIDs[sr.c.workers[0].name])
	}
	if env := strings.Join(db2.GetSpec().GetContainer().GetEnv(), " "); !strings.Contains(env, "REVISION=2") {
		t.Errorf("db's new task's environment %q lacks REVISION=2", env)
	}
	before := sr.lastVisit
	for _, w := range sr.c.workers {
		sr.webGet(t, webNodes[sr.c.nodeIDs[w.name]], "on "+w.name+" after db's update")
	}
	if sr.lastVisit <= before {
		t.Errorf("db's visit counter is %d after its task was replaced, want more than %d (the named volume kept)", sr.lastVisit, before)
	}
	return after
}

// redeploySame redeploys the same files: nothing changes.
func (sr *stackRun) redeploySame(t *testing.T, after map[string][]*objectv1.Task) {
	t.Helper()
	// Redeploy of the same files: nothing changes.
	out := sr.mustCLI(t, "stack", "deploy", "-c", sr.compose, "demo")
	t.Logf("stack deploy (same files):\n%s", out)
	for _, want := range []string{
		"Network demo_default is unchanged", "Secret demo_db_password is unchanged", "Config demo_greeting is unchanged",
		"Service demo_db is unchanged", "Service demo_web is unchanged",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stack deploy of the same files printed no %q", want)
		}
	}
	for _, bad := range []string{"Updating", "Creating"} {
		if strings.Contains(out, bad) {
			t.Errorf("stack deploy of the same files printed %q", bad)
		}
	}
	same := sr.tasks(t, "the stack's tasks running after the same deploy")
	for _, id := range []string{sr.webID, sr.dbID} {
		if got, want := taskIDs(same[id]), taskIDs(after[id]); !slices.Equal(got, want) {
			t.Errorf("service %s's running tasks after deploying the same files: %v, want unchanged %v", id, got, want)
		}
	}
	tasks, err := parseJSONList(sr.mustCLI(t, "stack", "ps", "demo", "--format", "json"), func() *objectv1.Task { return &objectv1.Task{} })
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 4 { // web's 2, db's first and second
		t.Errorf("stack ps lists %d tasks after deploying the same files, want 4 (web's 2, db's old and new)", len(tasks))
	}
}

// remove checks that stack rm removes everything the stack made.
func (sr *stackRun) remove(t *testing.T) {
	t.Helper()
	// stack rm removes everything the stack made.
	out := sr.mustCLI(t, "stack", "rm", "demo")
	t.Logf("stack rm:\n%s", out)
	for _, want := range []string{
		"Removing service demo_web", "Removing service demo_db", "Removing network demo_default",
		"Removing secret demo_db_password", "Removing config demo_greeting",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stack rm printed no %q", want)
		}
	}
	if out := sr.mustCLI(t, "stack", "ls"); regexp.MustCompile(`(?m)^demo\s`).MatchString(out) {
		t.Errorf("stack ls lists demo after stack rm:\n%s", out)
	}
	left := func(kind string, names []string, labels []map[string]string) {
		t.Helper()
		for i, n := range names {
			if strings.HasPrefix(n, "demo_") || labels[i]["shoal.stack"] == "demo" {
				t.Errorf("%s %s is left after stack rm", kind, n)
			}
		}
	}
	annotated := func(a []*objectv1.Annotations) ([]string, []map[string]string) {
		var names []string
		var labels []map[string]string
		for _, x := range a {
			names = append(names, x.GetName())
			labels = append(labels, x.GetLabels())
		}
		return names, labels
	}
	var ann []*objectv1.Annotations
	for _, s := range listJSON(t, sr.mustCLI(t, "service", "ls", "--format", "json"), func() *objectv1.Service { return &objectv1.Service{} }) {
		ann = append(ann, s.GetSpec().GetAnnotations())
	}
	names, labels := annotated(ann)
	left("service", names, labels)
	ann = nil
	for _, s := range listJSON(t, sr.mustCLI(t, "network", "ls", "--format", "json"), func() *objectv1.Network { return &objectv1.Network{} }) {
		ann = append(ann, s.GetSpec().GetAnnotations())
	}
	names, labels = annotated(ann)
	left("network", names, labels)
	ann = nil
	for _, s := range listJSON(t, sr.mustCLI(t, "secret", "ls", "--format", "json"), func() *objectv1.Secret { return &objectv1.Secret{} }) {
		ann = append(ann, s.GetSpec().GetAnnotations())
	}
	names, labels = annotated(ann)
	left("secret", names, labels)
	ann = nil
	for _, s := range listJSON(t, sr.mustCLI(t, "config", "ls", "--format", "json"), func() *objectv1.Config { return &objectv1.Config{} }) {
		ann = append(ann, s.GetSpec().GetAnnotations())
	}
	names, labels = annotated(ann)
	left("config", names, labels)
	if out, err := sr.cli("stack", "ps", "demo"); err == nil {
		t.Errorf("stack ps demo after stack rm succeeded: %s", out)
	}
}

// editFile replaces the one occurrence of old in file by new.
func editFile(t *testing.T, file, old, new string) {
	t.Helper()
	b := readFile(t, file)
	if strings.Count(b, old) != 1 {
		t.Fatalf("%s holds %q %d times, want once", file, old, strings.Count(b, old))
	}
	if err := os.WriteFile(file, []byte(strings.Replace(b, old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// parseJSONList parses the CLI's --format json list of messages.
func parseJSONList[M proto.Message](out string, mk func() M) ([]M, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		return nil, fmt.Errorf("not a JSON list: %v: %s", err, out)
	}
	var items []M
	for _, r := range raw {
		m := mk()
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(r, m); err != nil {
			return nil, fmt.Errorf("not protojson: %v: %s", err, r)
		}
		items = append(items, m)
	}
	return items, nil
}

func listJSON[M proto.Message](t *testing.T, out string, mk func() M) []M {
	t.Helper()
	items, err := parseJSONList(out, mk)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

var visitRE = regexp.MustCompile(`visit (\d+)`)

// visitOf is the last visit count in a reply of examples/hello, 0 without.
func visitOf(reply string) int {
	m := visitRE.FindAllStringSubmatch(reply, -1)
	if len(m) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return n
}

func taskIDs(tasks []*objectv1.Task) []string {
	var ids []string
	for _, tk := range tasks {
		ids = append(ids, tk.GetId())
	}
	slices.Sort(ids)
	return ids
}

// httpGetFrom GETs http://addr:port/ from network namespace ns and returns
// the body of a 200 answer.
func httpGetFrom(ctx context.Context, ns, addr string, port int) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "timeout", "5", "bash", "-c",
		fmt.Sprintf(`exec 3<>/dev/tcp/%s/%d && printf 'GET / HTTP/1.0\r\nHost: %[1]s\r\n\r\n' >&3 && cat <&3`, addr, port))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("GET from %s to %s:%d: %v: %s", ns, addr, port, err, out)
	}
	head, body, ok := strings.Cut(strings.ReplaceAll(string(out), "\r\n", "\n"), "\n\n")
	if !ok || !strings.HasPrefix(head, "HTTP/1.") || !strings.Contains(strings.SplitN(head, "\n", 2)[0], " 200 ") {
		return "", fmt.Errorf("GET from %s to %s:%d answered %q", ns, addr, port, out)
	}
	return strings.TrimSpace(body), nil
}
