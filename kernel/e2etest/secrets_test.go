package e2etest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TestSecrets gives a service of 2 real containers a secret and a config,
// through the CLI, and checks what the feature promises: each task reads
// the secret at /run/secrets/NAME, on a tmpfs, read-only, and the config
// at its target; no output of the CLI shows the secret's data; the node's
// data directory (Raft log and snapshots included) holds it nowhere but
// on the tasks' tmpfs; a used secret cannot be removed; rotating it with
// --secret-rm/--secret-add rolls the tasks onto the new value; once the
// service is gone no tmpfs of its tasks stays mounted and the secret can
// be removed. A secret over 500 KiB is refused, naming the limit.
func TestSecrets(t *testing.T) {
	n := startNode(t)
	// Snapshots as often as Raft allows, so the data is in one when the
	// directory is searched: the node restarts with this config.
	n.signal(syscall.SIGTERM)
	appendConfig(t, n, "[raft]\nsnapshot_threshold = 1\nsnapshot_interval = \"100ms\"\n")
	n.start()
	n.waitReady(90 * time.Second)

	data := filepath.Join(n.dir, "data")
	s := secretsRun{
		n:       n,
		data:    data,
		refsDir: filepath.Join(data, "plugins", "executor", "secrets"),
		value:   "e2e-secret-" + randomHex(t),
		value2:  "e2e-secret-v2-" + randomHex(t),
		conf:    "listen = 8080\nname = app-" + randomHex(t)[:8] + "\n",
	}
	tasks := s.create(t)
	s.checkCLIHides(t)
	s.checkOnNode(t, tasks)
	s.checkInTasks(t, tasks)
	s.rotate(t, tasks)
	s.remove(t)
}

// secretsRun is what the steps of TestSecrets share: the node, its data
// directory, and the secrets' and the config's data.
type secretsRun struct {
	n *node
	// data is the node's data directory; refsDir where the executor
	// mounts the tasks' secrets.
	data, refsDir string
	// value is db_password's data, value2 db_password_v2's; conf app_conf's.
	value, value2, conf string
}

// create refuses a secret too big, creates db_password and app_conf, and
// the service app that uses them; it returns app's tasks.
func (s secretsRun) create(t *testing.T) []*objectv1.Task {
	t.Helper()
	n := s.n
	// Too big: refused, naming the limit, and nothing stored.
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), 600<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	r := n.cli("secret", "create", "huge", big)
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "500 KiB") {
		t.Errorf("secret create of 600 KiB = %+v; want it refused, naming the 500 KiB limit", r)
	}
	if ls := n.ok(t, "secret", "ls", "--format", "json"); strings.Contains(ls, "huge") {
		t.Errorf("secret ls --format json after a refused create:\n%s\nwant no secret huge", ls)
	}

	// Created from stdin and from a file.
	r = n.cliIn(s.value, "secret", "create", "db_password", "-")
	if r.code != 0 {
		t.Fatalf("secret create db_password -: %+v", r)
	}
	confFile := filepath.Join(t.TempDir(), "app.conf")
	if err := os.WriteFile(confFile, []byte(s.conf), 0o600); err != nil {
		t.Fatal(err)
	}
	n.ok(t, "config", "create", "app_conf", confFile)

	n.ok(t, "service", "create", "--name", "app", "--replicas", "2",
		"--secret", "db_password", "--config", "source=app_conf,target=/etc/app.conf",
		testImage, "sleep:inf")
	return waitTasks(t, n, "app", 2, testImage)
}

// checkCLIHides checks that nothing the CLI prints shows the secret's data,
// while config inspect --pretty shows the config's.
func (s secretsRun) checkCLIHides(t *testing.T) {
	t.Helper()
	n := s.n
	// Nothing the CLI prints shows the s.data.
	for _, args := range [][]string{
		{"secret", "inspect", "db_password"},
		{"secret", "inspect", "--pretty", "db_password"},
		{"secret", "ls"},
		{"secret", "ls", "--format", "json"},
		{"service", "inspect", "app"},
		{"service", "ps", "--format", "json", "app"},
	} {
		out := n.ok(t, args...)
		if containsValue([]byte(out), s.value) {
			t.Errorf("shoal %s shows the secret's data:\n%s", strings.Join(args, " "), out)
		}
		if args[0] == "secret" && !strings.Contains(out, "db_password") {
			t.Errorf("shoal %s printed\n%s\nwant db_password in it", strings.Join(args, " "), out)
		}
	}
	// A config's data is not secret: inspect --pretty shows it.
	if out := n.ok(t, "config", "inspect", "--pretty", "app_conf"); !strings.Contains(out, strings.TrimSpace(s.conf)) {
		t.Errorf("config inspect --pretty app_conf:\n%s\nwant the config's data in it", out)
	}
}

// checkOnNode checks that each task has a tmpfs of its own and that the
// s.data is nowhere else under the s.data directory.
func (s secretsRun) checkOnNode(t *testing.T, tasks []*objectv1.Task) {
	t.Helper()
	n := s.n
	// On the node: each task has a tmpfs of its own, and the s.data is
	// nowhere else under the s.data directory, not in the Raft log and not
	// in a snapshot taken since.
	mounts := hostTmpfsUnder(t, s.refsDir)
	for _, task := range tasks {
		if !slices.Contains(mounts, filepath.Join(s.refsDir, task.GetId())) {
			t.Errorf("no tmpfs mounted at %s for task %s; tmpfs under %s: %q", filepath.Join(s.refsDir, task.GetId()), task.GetId(), s.refsDir, mounts)
		}
	}
	waitNewSnapshot(t, n, s.data)
	checkOnlyOnTmpfs(t, s.data, s.value)
	// The search reads the Raft store: the secret's name (not secret) is
	// in its log or its snapshots.
	if !foundUnder(t, filepath.Join(s.data, "raft"), "db_password") {
		t.Errorf("the search found no file under %s with the secret's name: it does not read the Raft store", filepath.Join(s.data, "raft"))
	}
}

// checkInTasks checks the secret and the config in the containers.
func (s secretsRun) checkInTasks(t *testing.T, tasks []*objectv1.Task) {
	t.Helper()
	n := s.n
	// In the containers: the secret, on a tmpfs, read-only; the config.
	for _, task := range tasks {
		id := task.GetId()
		r := n.cli("task", "exec", id, "--", "/prog", "cat:/run/secrets/db_password")
		if r.code != 0 || r.stdout != s.value {
			t.Errorf("task %s: cat /run/secrets/db_password = %+v; want %q", id, r, s.value)
		}
		r = n.cli("task", "exec", id, "--", "/prog", "cat:/etc/app.conf")
		if r.code != 0 || r.stdout != s.conf {
			t.Errorf("task %s: cat /etc/app.conf = %+v; want %q", id, r, s.conf)
		}
		mi := n.ok(t, "task", "exec", id, "--", "/prog", "cat:/proc/self/mountinfo")
		if fstype, opts, ok := mountOf(mi, "/run/secrets/db_password"); !ok || fstype != "tmpfs" || !slices.Contains(opts, "ro") {
			t.Errorf("task %s: /run/secrets/db_password is mounted %v as %q with %q; want a read-only tmpfs mount:\n%s", id, ok, fstype, opts, mi)
		}
		r = n.cli("task", "exec", id, "--", "/prog", "write:/run/secrets/db_password=changed")
		if r.code == 0 {
			t.Errorf("task %s: writing /run/secrets/db_password succeeded; want it read-only", id)
		}
	}
}

// rotate checks that a secret in use is not removed, then replaces it by a
// new secret at the same target, which rolls the tasks.
func (s secretsRun) rotate(t *testing.T, tasks []*objectv1.Task) {
	t.Helper()
	n := s.n
	// In use: not removed, and the error names the service.
	r := n.cli("secret", "rm", "db_password")
	if r.code == 0 || !strings.Contains(r.stderr, "app") {
		t.Errorf("secret rm of a used secret = %+v; want it refused, naming the service app", r)
	}
	if ls := n.ok(t, "secret", "ls"); !strings.Contains(ls, "db_password") {
		t.Errorf("secret ls after a refused rm:\n%s\nwant db_password still there", ls)
	}

	// Rotation: a new secret at the same target rolls the tasks.
	r = n.cliIn(s.value2, "secret", "create", "db_password_v2", "-")
	if r.code != 0 {
		t.Fatalf("secret create db_password_v2 -: %+v", r)
	}
	n.ok(t, "service", "update", "--secret-rm", "db_password", "--secret-add", "source=db_password_v2,target=db_password", "app")
	rolled := waitTasks(t, n, "app", 2, testImage)
	for _, task := range rolled {
		if slices.ContainsFunc(tasks, func(old *objectv1.Task) bool { return old.GetId() == task.GetId() }) {
			t.Errorf("task %s ran before the update and still runs: want every task replaced", task.GetId())
		}
	}
	waitNewSnapshot(t, n, s.data)
	checkOnlyOnTmpfs(t, s.data, s.value2)
	checkOnlyOnTmpfs(t, s.data, s.value)
	for _, task := range rolled {
		var r result
		eventually(t, 30*time.Second, func(context.Context) error {
			r = n.cli("task", "exec", task.GetId(), "--", "/prog", "cat:/run/secrets/db_password")
			if r.code != 0 || r.stdout != s.value2 {
				return fmt.Errorf("task %s: cat /run/secrets/db_password = %+v; want %q", task.GetId(), r, s.value2)
			}
			return nil
		})
	}
}

// remove removes the service, then the secrets and the config, and checks
// that nothing of theirs is left.
func (s secretsRun) remove(t *testing.T) {
	t.Helper()
	n := s.n
	// Once the service and its tasks are gone, no tmpfs of theirs is left
	// and the secret can be removed.
	appID := n.serviceID("app")
	n.ok(t, "service", "rm", "app")
	eventually(t, 90*time.Second, func(ctx context.Context) error {
		tasks, err := n.tasks(ctx, appID)
		if err != nil {
			return err
		}
		if len(tasks) != 0 {
			return fmt.Errorf("the removed service still has tasks: %s", summary(tasks))
		}
		c, err := n.containers(ctx)
		if err != nil || c != 0 {
			return fmt.Errorf("%d containers left (%v)", c, err)
		}
		return nil
	})
	if left := hostTmpfsUnder(t, s.refsDir); len(left) != 0 {
		t.Errorf("tmpfs still mounted under %s once the service is removed: %q", s.refsDir, left)
	}
	// The previous spec (which a rollback would bring back) used the old
	// secret until the service was removed: both can go now.
	n.ok(t, "secret", "rm", "db_password", "db_password_v2")
	n.ok(t, "config", "rm", "app_conf")
	if ls := n.ok(t, "secret", "ls", "--format", "json"); strings.Contains(ls, "db_password") {
		t.Errorf("secret ls --format json after rm:\n%s\nwant no secret", ls)
	}
	checkOnlyOnTmpfs(t, s.data, s.value2)
}

// appendConfig appends text to the node's config file.
func appendConfig(t *testing.T, n *node, text string) {
	t.Helper()
	f, err := os.OpenFile(n.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// containsValue reports whether b holds value, as is or base64-encoded (as
// JSON would show bytes).
func containsValue(b []byte, value string) bool {
	for _, s := range []string{value, base64.StdEncoding.EncodeToString([]byte(value)), base64.RawURLEncoding.EncodeToString([]byte(value))} {
		if bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}

// mountOf finds the mount at target in a /proc/PID/mountinfo, the last
// one, and returns its filesystem type and its mount options.
func mountOf(mountinfo, target string) (fstype string, opts []string, ok bool) {
	for line := range strings.Lines(mountinfo) {
		pre, post, found := strings.Cut(strings.TrimSpace(line), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !found || len(f) < 6 || len(g) < 1 || f[4] != target {
			continue
		}
		fstype, opts, ok = g[0], strings.Split(f[5], ","), true
	}
	return fstype, opts, ok
}

// hostTmpfsUnder lists the tmpfs mounted on the host under dir.
func hostTmpfsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		pre, post, _ := strings.Cut(strings.TrimSpace(line), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 1 || g[0] != "tmpfs" {
			continue
		}
		if strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

// snapshots lists the Raft snapshots under the data directory, by path.
func snapshots(t *testing.T, data string) []string {
	t.Helper()
	var snaps []string
	filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "state.bin" && filepath.Base(filepath.Dir(filepath.Dir(path))) == "snapshots" {
			snaps = append(snaps, filepath.Dir(path))
		}
		return nil
	})
	return snaps
}

// waitNewSnapshot waits until Raft has written a snapshot taken after the
// call: it writes to the store (a config) so there is something new to
// snapshot.
func waitNewSnapshot(t *testing.T, n *node, data string) {
	t.Helper()
	before := snapshots(t, data)
	name := "snapshot_trigger_" + randomHex(t)[:8]
	r := n.cliIn("x", "config", "create", name, "-")
	if r.code != 0 {
		t.Fatalf("config create %s: %+v", name, r)
	}
	eventually(t, 60*time.Second, func(context.Context) error {
		for _, s := range snapshots(t, data) {
			if !slices.Contains(before, s) {
				return nil
			}
		}
		return fmt.Errorf("no Raft snapshot since %q", before)
	})
	n.ok(t, "config", "rm", name)
}

// checkOnlyOnTmpfs searches every regular file under data for value (as
// is or base64-encoded) and fails t if it is anywhere but on a tmpfs
// mounted under data: the tasks' secrets.
func checkOnlyOnTmpfs(t *testing.T, data, value string) {
	t.Helper()
	tmpfs := hostTmpfsUnder(t, data)
	onTmpfs := func(path string) bool {
		return slices.ContainsFunc(tmpfs, func(m string) bool { return strings.HasPrefix(path, m+"/") })
	}
	var found, searched int
	err := filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		searched++
		if containsValue(b, value) {
			if onTmpfs(path) {
				found++
				return nil
			}
			t.Errorf("the secret's data is in %s (not on a tmpfs)", path)
			logLine(t, b, value)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("searching %s: %v", data, err)
	}
	t.Logf("searched %d files under %s for %.20s...: %d on the tasks' tmpfs", searched, data, value, found)
}

// foundUnder reports whether a regular file under dir holds s.
func foundUnder(t *testing.T, dir, s string) bool {
	t.Helper()
	found := false
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, []byte(s)) {
			t.Logf("%s holds %q", path, s)
			found = true
		}
		return nil
	})
	return found
}

// logLine logs the line of b where value is, for a failure message.
func logLine(t *testing.T, b []byte, value string) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, len(b)+1)
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), []byte(value)) {
			t.Logf("  %.300q", sc.Bytes())
			return
		}
	}
}
