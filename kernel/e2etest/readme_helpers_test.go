package e2etest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// result is how a CLI command ended.
type result struct {
	stdout, stderr string
	code           int
}

// cli runs the shoal CLI against the node and returns what it printed and
// its exit status.
func (n *node) cli(args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.bin, append([]string{"--host", "unix://" + n.socket}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		r.code = -1
		r.stderr += err.Error()
	}
	return r
}

// ok runs the CLI and returns its stdout, failing t unless it exits 0.
func (n *node) ok(t *testing.T, args ...string) string {
	t.Helper()
	r := n.cli(args...)
	if r.code != 0 {
		t.Fatalf("shoal %s: exit status %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// managerListenAddr is the node's [manager] listen_addr, from its config.
func (n *node) managerListenAddr(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(n.config)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "listen_addr = "); ok && strings.Contains(string(b), "[manager]\n"+line) {
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	t.Fatalf("no [manager] listen_addr in %s", b)
	return ""
}

// helloImages packs examples/hello into the README's two images as `make
// images` does, into the test's directory, and returns their tars by
// reference.
func helloImages(t *testing.T) map[string]string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tars := map[string]string{}
	for _, v := range []string{"1", "2"} {
		ref := "shoal.local/hello:" + v
		tar := filepath.Join(dir, "hello-"+v+".tar")
		cmd := exec.Command("go", "run", "./internal/mkimage", "-name", ref, "-env", "HELLO_VERSION="+v, "-o", tar, "./examples/hello")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go run ./internal/mkimage (make images): %v\n%s", err, out)
		}
		tars[ref] = tar
	}
	return tars
}

// importImage runs `shoal image import` with a node's config, once the
// node's containerd answers, and checks that it loaded ref: the first
// image as text, the others as --format json.
func importImage(t *testing.T, bin, config, tar, ref string) {
	t.Helper()
	args := []string{"image", "import", "--config", config, tar}
	asJSON := ref != helloV1
	if asJSON {
		args = append(args, "--format", "json")
	}
	var out string
	eventually(t, 60*time.Second, func(ctx context.Context) error {
		b, err := exec.CommandContext(ctx, bin, args...).Output()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			err = fmt.Errorf("%v: %s", err, exit.Stderr)
		}
		out = string(b)
		return err
	})
	if !asJSON {
		if out != "Loaded image: "+ref+"\n" {
			t.Fatalf("shoal image import printed %q, want it to name %s", out, ref)
		}
		return
	}
	var loaded []struct {
		Name string `json:"name"`
	}
	decodeJSON(t, "image import --format json", out, &loaded)
	if len(loaded) != 1 || loaded[0].Name != ref {
		t.Fatalf("shoal image import --format json printed %q, want [{\"name\": %q}]", out, ref)
	}
}

// waitTasks waits until the service has want tasks desired running, all
// running image with a process, and returns them, read with `service ps
// --format json`.
func waitTasks(t *testing.T, n *node, service string, want int, image string) []*objectv1.Task {
	t.Helper()
	var running []*objectv1.Task
	eventually(t, 90*time.Second, func(context.Context) error {
		tasks, err := n.ps(service)
		if err != nil {
			return err
		}
		running = running[:0]
		for _, task := range tasks {
			if task.GetDesiredState() != objectv1.TaskState_TASK_STATE_RUNNING {
				continue
			}
			if task.GetStatus().GetState() != objectv1.TaskState_TASK_STATE_RUNNING || task.GetStatus().GetPid() == 0 ||
				task.GetSpec().GetContainer().GetImage() != image {
				return fmt.Errorf("task %s of %s is not running %s: %s", task.GetId(), service, image, summary(tasks))
			}
			running = append(running, task)
		}
		if len(running) != want {
			return fmt.Errorf("%d tasks of %s run, want %d: %s", len(running), service, want, summary(tasks))
		}
		return nil
	})
	return running
}

// waitServiceRow waits until `service ls` shows the service with replicas
// (e.g. "3/3") of image, and returns the row's fields.
func waitServiceRow(t *testing.T, n *node, service, replicas, image string) []string {
	t.Helper()
	var f []string
	eventually(t, 60*time.Second, func(context.Context) error {
		out, err := n.run("service", "ls")
		if err != nil {
			return err
		}
		f = nil
		for line := range strings.Lines(out) {
			if fs := strings.Fields(line); len(fs) >= 5 && fs[1] == service {
				f = fs
			}
		}
		if len(f) < 5 || f[2] != "replicated" || f[3] != replicas || f[4] != image {
			return fmt.Errorf("service ls printed\n%s\nwant %s replicated %s %s", out, service, replicas, image)
		}
		return nil
	})
	return f
}

// checkPsTable checks the rows of `service ps` of the tasks desired
// running: there are want, with the IDs of tasks (when given), each
// running image on node.
func checkPsTable(t *testing.T, out string, want int, tasks []*objectv1.Task, image, node string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[0], "DESIRED STATE") {
		t.Fatalf("service ps printed\n%s\nwant a table", out)
	}
	var ids []string
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) > 1 && f[1] == `\_` { // an earlier task of the slot
			f = slices.Delete(f, 1, 2)
		}
		if len(f) < 6 || f[4] != "running" {
			continue
		}
		if f[2] != image || f[3] != node || f[5] != "running" {
			t.Errorf("service ps: row %q, want a task running %s on %s", line, image, node)
		}
		ids = append(ids, f[0])
	}
	if len(ids) != want {
		t.Errorf("service ps printed\n%s\nwant %d tasks desired running", out, want)
	}
	if tasks == nil {
		return
	}
	var wantIDs []string
	for _, task := range tasks {
		wantIDs = append(wantIDs, task.GetId()[:12])
	}
	if !sameSet(ids, wantIDs) {
		t.Errorf("service ps printed\n%s\nwant the running tasks %q", out, wantIDs)
	}
}

// tableRow returns the fields of the row of a table whose second column
// is name.
func tableRow(t *testing.T, what, out, name string) []string {
	t.Helper()
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) >= 4 && f[1] == name {
			return f
		}
	}
	t.Fatalf("%s printed\n%s\nwith no row of %s", what, out, name)
	return nil
}

// logPrefix is the prefix of a task's lines in `service logs`.
func logPrefix(service string, task *objectv1.Task, host string) string {
	return fmt.Sprintf("%s.%d.%s@%s", service, task.GetSlot(), task.GetId()[:12], host)
}

// greeting is the first line of examples/hello in a task, which also
// answers its HTTP requests: its hostname is the task's ID.
func greeting(task *objectv1.Task, version string) string {
	return "hello from " + task.GetId() + " (v" + version + ")"
}

// httpAnswers waits until a GET of url answers 200 with body.
func httpAnswers(t *testing.T, url, body string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	eventually(t, 60*time.Second, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || string(b) != body {
			return fmt.Errorf("GET %s: %s %q, want 200 %q", url, resp.Status, b, body)
		}
		return nil
	})
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// decodeJSON decodes out, a command's --format json output, into v,
// refusing fields v does not have.
func decodeJSON(t *testing.T, what, out string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v:\n%s", what, err, out)
	}
	if dec.More() {
		t.Fatalf("%s: more than one JSON value:\n%s", what, out)
	}
}

// protoListErr decodes a JSON array of T (proto messages, with the
// proto's field names) into list.
func protoListErr[T any, P interface {
	*T
	proto.Message
}](out string, list *[]P) error {
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		return fmt.Errorf("want a JSON array: %v: %q", err, out)
	}
	*list = make([]P, len(raw))
	for i, r := range raw {
		(*list)[i] = new(T)
		if err := protojson.Unmarshal(r, (*list)[i]); err != nil {
			return fmt.Errorf("item %d: %v: %s", i, err, r)
		}
	}
	return nil
}

// protoList decodes a command's JSON array of T, failing t unless it is
// one.
func protoList[T any, P interface {
	*T
	proto.Message
}](t *testing.T, what, out string) []P {
	t.Helper()
	var list []P
	if err := protoListErr(out, &list); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return list
}

// protoOne decodes a command's JSON object, a T, failing t unless it is
// one.
func protoOne[T any, P interface {
	*T
	proto.Message
}](t *testing.T, what, out string) P {
	t.Helper()
	var m P = new(T)
	if err := protojson.Unmarshal([]byte(out), m); err != nil {
		t.Fatalf("%s: want a JSON object: %v:\n%s", what, err, out)
	}
	return m
}

// startWorker starts a second `shoal agent` on this machine, a worker of
// m's cluster named hostname, with its own data directory and its own
// containerd under it, joining with join (a [join] section, as `shoal
// join-token worker` prints it). Its tasks run on the host's network (the
// test gives it no networks: the two nodes would share one network
// namespace). When the test ends, every service is removed, the worker's
// containers are waited for, and it stops, before m does.
func startWorker(t *testing.T, m *node, hostname, join string) *node {
	t.Helper()
	dir, err := os.MkdirTemp("", "shoal-e2e-w-")
	if err != nil {
		t.Fatal(err)
	}
	w := &node{tb: t, bin: m.bin, dir: dir, config: filepath.Join(dir, "node.toml"), table: filepath.Base(dir)}
	cfg := fmt.Sprintf(`version = 1
[node]
hostname = %q
data_dir = %q
role = "worker"
[metrics]
listen_addr = ""
[log]
level = "info"
[gossip]
listen_addr = "127.0.0.1:0"
[services]
nftables_table = %q
`, hostname, filepath.Join(dir, "data"), w.table) + join
	if err := os.WriteFile(w.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.stopWorker(m) })
	w.start()
	return w
}

// stopWorker removes every service of the cluster, waits until the worker
// holds no container, stops it and deletes its directory.
func (w *node) stopWorker(m *node) {
	err := m.removeAllServices(60 * time.Second)
	deadline := time.Now().Add(60 * time.Second)
	for err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, cerr := w.containers(ctx)
		cancel()
		ns, _ := os.ReadDir(filepath.Join(w.dir, "data", "plugins", "executor", "net", "netns"))
		if cerr == nil && c == 0 && len(ns) == 0 {
			break
		}
		if time.Now().After(deadline) {
			err = fmt.Errorf("the worker still holds %d containers (%v) and %d network namespaces", c, cerr, len(ns))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		w.tb.Errorf("cleanup of the worker: %v", err)
	}
	w.signal(syscall.SIGTERM)
	w.killShims()
	w.deleteTable()
	if w.tb.Failed() || err != nil {
		w.tb.Logf("---- worker log (tail) ----\n%s", tail(w.output(), 12000))
	}
	if dir := os.Getenv("SHOAL_TEST_LOGDIR"); dir != "" {
		os.WriteFile(filepath.Join(dir, strings.ReplaceAll(w.tb.Name(), "/", "_")+"-worker.log"), []byte(w.output()), 0o644)
	}
	if err == nil {
		if rerr := os.RemoveAll(w.dir); rerr != nil {
			w.tb.Errorf("cleanup of the worker: %v", rerr)
		}
	}
}

// waitContains waits until a line of stdout contains s and returns it,
// failing after timeout or if the command exits first.
func (l *logsCmd) waitContains(s string, timeout time.Duration) string {
	l.t.Helper()
	deadline := time.After(timeout)
	for {
		l.mu.Lock()
		for _, line := range l.stdout {
			if strings.Contains(line, s) {
				l.mu.Unlock()
				return line
			}
		}
		seen := l.seen
		l.mu.Unlock()
		select {
		case <-seen:
		case err := <-l.done:
			l.done <- err
			l.t.Fatalf("shoal logs exited (%v) before printing a line with %q; it printed\n%s", err, s, l.output())
		case <-deadline:
			l.t.Fatalf("shoal logs printed no line with %q within %s; it printed\n%s", s, timeout, l.output())
		}
	}
}
