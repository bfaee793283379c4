package ctrexec

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func TestFileTarget(t *testing.T) {
	for _, tc := range []struct {
		secret       bool
		name, target string
		want         string // "" for an error
	}{
		{true, "db_password", "", "/run/secrets/db_password"},
		{true, "db_password", "pw", "/run/secrets/pw"},
		{true, "db_password", "/etc/app/pw", "/etc/app/pw"},
		{false, "app.toml", "", "/app.toml"},
		{false, "app.toml", "/etc/app/app.toml", "/etc/app/app.toml"},
		{true, "x", "a/b", ""},
		{true, "x", "..", ""},
		{true, "", "", ""},
		{true, "x", "/etc/../shadow", ""},
		{true, "x", "/etc//pw", ""},
		{true, "x", "/etc/pw/", ""},
		{true, "x", "/", ""},
		{false, "x", "etc/app.toml", ""},
		{false, "x", "/" + strings.Repeat("n", 256), ""},
		{false, "x", "/" + strings.Repeat("n", 255), "/" + strings.Repeat("n", 255)},
	} {
		got, err := fileTarget(tc.secret, &objectv1.FileReference{Name: tc.name, Target: tc.target})
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("fileTarget(secret %v, name %q, target %q) = %q, %v; want %q", tc.secret, tc.name, tc.target, got, err, tc.want)
		}
	}
}

// secretTask is a task of the test image running args, with a secret
// db_password (mode 0400, owned by 1000:1001) and a config at
// /etc/app/app.toml, and their files.
func secretTask(t *testing.T, secret []byte, args ...string) (*objectv1.Task, []*objectv1.TaskFile) {
	task := newTask(t, args...)
	sref := &objectv1.FileReference{Id: "s1", Name: "db_password", Uid: "1000", Gid: "1001", Mode: 0o400}
	cref := &objectv1.FileReference{Id: "c1", Name: "app.toml", Target: "/etc/app/app.toml"}
	task.Spec.Container.Secrets = []*objectv1.FileReference{sref}
	task.Spec.Container.Configs = []*objectv1.FileReference{cref}
	return task, []*objectv1.TaskFile{
		{Ref: cref, Data: []byte("port = 8080\n")},
		{Ref: sref, Secret: true, Data: secret},
	}
}

// TestSecretsAndConfigs: a task's secret is at /run/secrets/NAME and its
// config at its target, read-only files on a tmpfs with the references'
// owners and modes; the secret's data is nowhere on disk, neither in the
// executor's state nor in containerd's; Remove unmounts and deletes the
// tmpfs.
func TestSecretsAndConfigs(t *testing.T) {
	state := t.TempDir()
	e := newExecutor(t, state, "")
	secret := []byte("pw-" + randomHex(t))
	task, files := secretTask(t, secret,
		"cat:/run/secrets/db_password", "out:", "cat:/etc/app/app.toml", "cat:/proc/self/mountinfo",
		"write:/run/secrets/db_password=overwritten")
	ctx := ctxT(t)
	if err := e.Prepare(ctx, task, files, nil); err != nil {
		t.Fatalf("Prepare = %v", err)
	}
	t.Cleanup(func() { _ = e.Remove(context.Background(), task.Id) })

	dir := filepath.Join(state, "secrets", task.Id)
	if ok, err := isTmpfs(dir); !ok || err != nil {
		t.Fatalf("%s is not a tmpfs: %v", dir, err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		t.Fatal(err)
	}
	if size := uint64(sfs.Blocks) * uint64(sfs.Bsize); size > 1<<20 {
		t.Errorf("the task's tmpfs is %d bytes, want it sized for its files", size)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("tmpfs root %v, %v; want 0700", fi, err)
	}
	for _, want := range []struct {
		name     string
		mode     os.FileMode
		uid, gid uint32
	}{{"secret-0", 0o400, 1000, 1001}, {"config-1", 0o444, 0, 0}} {
		fi, err := os.Stat(filepath.Join(dir, want.name))
		if err != nil {
			t.Errorf("%s: %v", want.name, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode() != want.mode || st.Uid != want.uid || st.Gid != want.gid {
			t.Errorf("%s is %v %d:%d, want %v %d:%d", want.name, fi.Mode(), st.Uid, st.Gid, want.mode, want.uid, want.gid)
		}
	}
	// Nothing of the secret on disk: only its tmpfs holds it (where the
	// search finds it, which shows that it looks).
	if found := grepTree(t, state, secret, ""); len(found) != 1 || filepath.Dir(found[0]) != dir {
		t.Errorf("the secret's data is in %q, want it on the task's tmpfs only", found)
	}
	for _, root := range []string{state, env.dir} {
		if found := grepTree(t, root, secret, dir); len(found) > 0 {
			t.Errorf("the secret's data is on disk in %q", found)
		}
	}

	if err := e.Start(ctx, task.Id); err != nil {
		t.Fatalf("Start = %v", err)
	}
	st := wait(t, e, task.Id)
	all := logs(t, e, task.Id, executor.LogOptions{Tail: -1})
	stdout, stderr := streamLines(all, "stdout"), streamLines(all, "stderr")
	// The secret has no newline of its own: "out:" ends its line.
	if len(stdout) < 2 || stdout[0] != string(secret) || stdout[1] != "port = 8080" {
		t.Fatalf("stdout = %q, want the secret, then the config", stdout)
	}
	// The write fails: the secret is read-only, even for root.
	if st.ExitCode != 125 || len(stderr) == 0 || !strings.Contains(stderr[len(stderr)-1], "read-only file system") {
		t.Errorf("write to the secret: exit %d, stderr %q; want it refused on a read-only file system", st.ExitCode, stderr)
	}
	for _, target := range []string{"/run/secrets/db_password", "/etc/app/app.toml"} {
		m := mountinfoLine(stdout, target)
		if m == nil {
			t.Errorf("%s is not a mount point in the container; mountinfo %q", target, stdout[2:])
			continue
		}
		if !strings.Contains(","+m.opts+",", ",ro,") || m.fstype != "tmpfs" {
			t.Errorf("%s is mounted %s, %s; want a read-only tmpfs", target, m.opts, m.fstype)
		}
	}

	// Once the process exited (Wait returned), the files are gone from the
	// node, though the container stays for its logs until Remove.
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after the task ended %s: %v, want it gone", dir, err)
	}
	if mounted(t, dir) {
		t.Errorf("after the task ended %s is still mounted", dir)
	}
	if err := e.Remove(ctx, task.Id); err != nil {
		t.Fatalf("Remove = %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Remove %s: %v, want it gone", dir, err)
	}
	if mounted(t, dir) {
		t.Errorf("after Remove %s is still mounted", dir)
	}
}

// TestSecretsSweep: a restarted executor keeps the tmpfs of the tasks it
// holds and unmounts and deletes those of tasks whose container is gone.
func TestSecretsSweep(t *testing.T) {
	state := t.TempDir()
	e := newExecutor(t, state, "")
	task, files := secretTask(t, []byte("kept"), "exit:0")
	if err := e.Prepare(ctxT(t), task, files, nil); err != nil {
		t.Fatalf("Prepare = %v", err)
	}
	t.Cleanup(func() { _ = e.Remove(context.Background(), task.Id) })
	stale := filepath.Join(state, "secrets", "gone-task")
	if err := writeRefFiles(stale, []refFile{{name: "secret-0", target: "/run/secrets/x", mode: 0o400, data: []byte("stale")}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = removeRefFiles(stale) })

	newExecutor(t, state, "")
	kept := filepath.Join(state, "secrets", task.Id)
	if ok, err := isTmpfs(kept); !ok || err != nil {
		t.Errorf("the tmpfs of a held task after a restart: %v, %v; want it kept", ok, err)
	}
	if b, err := os.ReadFile(filepath.Join(kept, "secret-0")); string(b) != "kept" {
		t.Errorf("the held task's secret after a restart = %q, %v", b, err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) || mounted(t, stale) {
		t.Errorf("the tmpfs of a task without a container after a restart: %v, want it unmounted and gone", err)
	}
}

// TestSecretErrors: bad references and files fail Prepare naming the field,
// and leave no tmpfs behind.
func TestSecretErrors(t *testing.T) {
	state := t.TempDir()
	e := newExecutor(t, state, "")
	for _, tc := range []struct {
		name  string
		edit  func(task *objectv1.Task, files []*objectv1.TaskFile) []*objectv1.TaskFile
		field string
		msg   string
	}{
		{"no file", func(_ *objectv1.Task, f []*objectv1.TaskFile) []*objectv1.TaskFile { return f[:1] },
			"task.spec.container.secrets[0]", "did not come with the task"},
		{"a file for no reference", func(task *objectv1.Task, f []*objectv1.TaskFile) []*objectv1.TaskFile {
			task.Spec.Container.Configs = nil
			return f
		}, "files[0]", "no reference"},
		{"a relative path", func(task *objectv1.Task, f []*objectv1.TaskFile) []*objectv1.TaskFile {
			task.Spec.Container.Secrets[0].Target = "../etc/passwd"
			f[1].Ref.Target = "../etc/passwd"
			return f
		}, "task.spec.container.secrets[0].target", "file name"},
		{"..", func(task *objectv1.Task, f []*objectv1.TaskFile) []*objectv1.TaskFile {
			task.Spec.Container.Configs[0].Target = "/etc/../x"
			return f
		}, "task.spec.container.configs[0].target", "clean path"},
		{"a long name", func(task *objectv1.Task, f []*objectv1.TaskFile) []*objectv1.TaskFile {
			task.Spec.Container.Configs[0].Target = "/" + strings.Repeat("n", 300)
			return f
		}, "task.spec.container.configs[0].target", "at most 255"},
		{"a uid", func(task *objectv1.Task, f []*objectv1.TaskFile) []*objectv1.TaskFile {
			task.Spec.Container.Secrets[0].Uid = "www"
			return f
		}, "task.spec.container.secrets[0].uid", "number"},
		{"a mode", func(task *objectv1.Task, f []*objectv1.TaskFile) []*objectv1.TaskFile {
			task.Spec.Container.Secrets[0].Mode = 0o4755
			return f
		}, "task.spec.container.secrets[0].mode", "at most 0777"},
		{"too much data", func(_ *objectv1.Task, f []*objectv1.TaskFile) []*objectv1.TaskFile {
			f[1].Data = bytes.Repeat([]byte("x"), 500<<10+1)
			return f
		}, "files[1].data", "at most 512000"},
		{"a duplicate target", func(task *objectv1.Task, f []*objectv1.TaskFile) []*objectv1.TaskFile {
			task.Spec.Container.Configs[0].Target = "/run/secrets/db_password"
			return f
		}, "task.spec.container.configs[0].target", "also the target"},
	} {
		task, files := secretTask(t, []byte("pw"), "exit:0")
		files = tc.edit(task, files)
		err := e.Prepare(ctxT(t), task, files, nil)
		var fe sdk.FieldErrors
		if !errors.As(err, &fe) || !errors.Is(err, sdk.ErrInvalidArgument) || !hasFieldError(fe, tc.field, tc.msg) {
			t.Errorf("Prepare with %s = %v, want %s: ...%s...", tc.name, err, tc.field, tc.msg)
		}
		if _, err := os.Stat(filepath.Join(state, "secrets", task.Id)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after Prepare with %s the task's tmpfs: %v, want none", tc.name, err)
		}
		_ = e.Remove(context.Background(), task.Id)
	}
}

func hasFieldError(fe sdk.FieldErrors, field, msg string) bool {
	for _, f := range fe {
		if f.Field == field && strings.Contains(f.Message, msg) {
			return true
		}
	}
	return false
}

func randomHex(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// grepTree returns the regular files under root, except under skip, that
// contain data. Files that cannot be read (sockets, fifos) are not files.
func grepTree(t *testing.T, root string, data []byte, skip string) []string {
	var found []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // gone meanwhile, or unreadable
		}
		if p == skip {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, data) {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

type mountinfo struct{ opts, fstype string }

// mountinfoLine finds target's mount in /proc/self/mountinfo's lines:
// "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS".
func mountinfoLine(lines []string, target string) *mountinfo {
	var m *mountinfo
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 10 || f[4] != target {
			continue
		}
		for i, x := range f {
			if x == "-" && i+1 < len(f) {
				m = &mountinfo{opts: f[5], fstype: f[i+1]} // the last one wins: it is on top
			}
		}
	}
	return m
}

// mounted reports whether dir is a mount point of this process's namespace.
func mounted(t *testing.T, dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return mountinfoLine(strings.Split(string(b), "\n"), dir) != nil
}
