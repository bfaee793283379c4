package ctrexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
	"github.com/shoalhq/shoal/sdk/netattach"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TestTaskFileMounts: the task's files are bind-mounted read-write onto
// /etc, except where the task mounts a file of its own.
func TestTaskFileMounts(t *testing.T) {
	rw := []string{"rbind", "rprivate", "rw"}
	got := taskFileMounts("/state/tasks/t1", []*objectv1.Mount{{Source: "/srv/hosts", Target: "/etc//hosts"}})
	want := []specs.Mount{
		{Type: "bind", Source: "/state/tasks/t1/resolv.conf", Destination: "/etc/resolv.conf", Options: rw},
		{Type: "bind", Source: "/state/tasks/t1/hostname", Destination: "/etc/hostname", Options: rw},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("taskFileMounts = %+v\nwant %+v", got, want)
	}
}

// TestRenderTaskFiles: a host without resolv.conf gives no search domains;
// errors name the task's fields as Prepare's do.
func TestRenderTaskFiles(t *testing.T) {
	task := &objectv1.Task{Id: "t1", Slot: 2, ServiceAnnotations: &objectv1.Annotations{Name: "web"},
		Networks: []*objectv1.NetworkAttachment{{NetworkId: "n1", Addr: "10.200.3.7/16", Gateway: "10.200.3.1"}}}
	files, err := renderTaskFiles(task, filepath.Join(t.TempDir(), "none"))
	if err != nil {
		t.Fatal(err)
	}
	if rc := string(files["resolv.conf"]); !strings.Contains(rc, "nameserver 10.200.3.1\n") || strings.Contains(rc, "search") {
		t.Errorf("resolv.conf without the host's:\n%s", rc)
	}
	if h := string(files["hosts"]); !strings.HasSuffix(h, "\n10.200.3.7\tt1 web.2 web.2.t1\n") {
		t.Errorf("hosts:\n%s", h)
	}
	if h := string(files["hostname"]); h != "t1\n" {
		t.Errorf("hostname %q", h)
	}

	task.Networks[0].Gateway = "gw"
	_, err = renderTaskFiles(task, filepath.Join(t.TempDir(), "none"))
	var fe sdk.FieldErrors
	if !errors.As(err, &fe) || !errors.Is(err, sdk.ErrInvalidArgument) || fe[0].Field != "task.networks[0].gateway" {
		t.Errorf("a bad gateway: %v, want field errors naming task.networks[0].gateway", err)
	}
}

// TestTaskResolvConfAndHosts runs a task on a network with the node's real
// task networking: its /etc/resolv.conf names the node's DNS server at the
// network's gateway with the host's search domains and options, its
// /etc/hosts maps its address to its hostname and names, and /etc/hostname
// has its hostname; the files are the task's own, in the executor's state
// directory, writable by the task. A restarted executor finds them and
// removes them with the task, and deletes those of tasks whose container is
// gone. A task without networks keeps the host's files.
func TestTaskResolvConfAndHosts(t *testing.T) {
	if _, err := os.Stat(netattach.DefaultCNIBinDir + "/bridge"); err != nil {
		t.Skipf("the CNI plugins are not installed (%v): run scripts/deps.sh", err)
	}
	address := startContainerd(t)
	hostRC := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(hostRC, []byte("nameserver 192.0.2.53\nsearch example.test corp.example.test\noptions ndots:3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stateDir := t.TempDir()
	var made []*Executor
	t.Cleanup(func() { // after the tasks' removal, registered later
		for _, e := range made {
			e.Close()
		}
	})
	configure := func() *Executor {
		e := New(Options{LogDriver: env.driver, ResolvConf: hostRC, NewNetwork: func(dir string) (Network, error) {
			return netattach.New(netattach.Config{StateDir: dir})
		}})
		made = append(made, e)
		if err := e.Configure(ctxT(t), executor.NodeInfo{StateDir: stateDir, ContainerdAddress: address}, []byte(`namespace = "`+testNamespace+`"`)); err != nil {
			t.Fatal(err)
		}
		return e
	}
	e := configure()
	cur := e // the executor that removes the test's tasks at its end

	task := newTask(t, "sleep:inf")
	// A network ID and subnet of this test's own, so that it shares no
	// bridge with other tests on the machine.
	task.Networks = []*objectv1.NetworkAttachment{{
		NetworkId: fmt.Sprintf("ctrfiles%d", os.Getpid()), NetworkName: "front",
		Addr: "10.234.7.10/16", Subnet: "10.234.0.0/16", NodeSubnet: "10.234.7.0/24", Gateway: "10.234.7.1",
	}}
	hostTask := newTask(t, "sleep:inf")
	for _, tk := range []*objectv1.Task{task, hostTask} {
		if err := e.Prepare(ctxT(t), tk, nil, nil); err != nil {
			t.Fatalf("Prepare(%s) = %v", tk.Id, err)
		}
		t.Cleanup(func() {
			if err := cur.Remove(context.Background(), tk.Id); err != nil {
				t.Errorf("Remove(%s) = %v", tk.Id, err)
			}
		})
		if err := e.Start(ctxT(t), tk.Id); err != nil {
			t.Fatalf("Start(%s) = %v", tk.Id, err)
		}
	}
	cat := func(e *Executor, id, path string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		code, err := e.Exec(ctxT(t), id, executor.ExecSpec{Cmd: []string{"/prog", "cat:" + path}}, executor.ExecIO{Stdout: &out, Stderr: &errOut})
		if err != nil || code != 0 {
			t.Fatalf("exec cat %s in %s = %d, %v (stderr %q)", path, id, code, err, errOut.String())
		}
		return out.String()
	}
	hasLine := func(file, content, line string) {
		t.Helper()
		for l := range strings.Lines(content) {
			if strings.TrimSuffix(l, "\n") == line {
				return
			}
		}
		t.Errorf("the task's %s has no line %q:\n%s", file, line, content)
	}

	rc := cat(e, task.Id, "/etc/resolv.conf")
	hasLine("resolv.conf", rc, "nameserver 10.234.7.1")
	hasLine("resolv.conf", rc, "search example.test corp.example.test")
	hasLine("resolv.conf", rc, "options ndots:3")
	if strings.Contains(rc, "192.0.2.53") {
		t.Errorf("the task's resolv.conf has the host's nameserver:\n%s", rc)
	}
	hosts := cat(e, task.Id, "/etc/hosts")
	hasLine("hosts", hosts, "127.0.0.1\tlocalhost")
	hasLine("hosts", hosts, "10.234.7.10\t"+task.Id+" web.1 web.1."+strings.ToLower(task.Id))
	if got := cat(e, task.Id, "/etc/hostname"); got != task.Id+"\n" {
		t.Errorf("the task's /etc/hostname is %q, want its hostname %q", got, task.Id)
	}
	dir := filepath.Join(stateDir, "tasks", task.Id)
	for _, name := range []string{"resolv.conf", "hosts", "hostname"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("the task's %s is not in the executor's state directory: %v", name, err)
		}
	}

	// A task without networks: the host's own resolv.conf (not
	// Options.ResolvConf, which only tasks with networks copy), no files.
	hostFile, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		t.Fatal(err)
	}
	if got := cat(e, hostTask.Id, "/etc/resolv.conf"); got != string(hostFile) {
		t.Errorf("a task without networks has resolv.conf\n%s\nwant the host's\n%s", got, hostFile)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "tasks", hostTask.Id)); !os.IsNotExist(err) {
		t.Errorf("a task without networks has task files: %v", err)
	}

	// Read-write, as docker's: a rewrite lands in the task's own copy.
	var errOut bytes.Buffer
	if code, err := e.Exec(ctxT(t), task.Id, executor.ExecSpec{Cmd: []string{"/prog", "write:/etc/hosts=127.0.0.1 localhost rewritten\n"}}, executor.ExecIO{Stderr: &errOut}); err != nil || code != 0 {
		t.Errorf("rewriting /etc/hosts in the task = %d, %v (stderr %q), want 0", code, err, errOut.String())
	} else if b, _ := os.ReadFile(filepath.Join(dir, "hosts")); string(b) != "127.0.0.1 localhost rewritten\n" {
		t.Errorf("after the task rewrote /etc/hosts its copy has %q", b)
	}

	// A restarted executor: the files of the task it finds stay, those of
	// a task whose container is gone go.
	orphan := filepath.Join(stateDir, "tasks", "orphan"+task.Id)
	if err := os.MkdirAll(orphan, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(orphan, "hosts"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e2 := configure()
	cur = e2
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("the files of a task without a container were kept: %v", err)
	}
	rc2 := cat(e2, task.Id, "/etc/resolv.conf")
	hasLine("resolv.conf", rc2, "nameserver 10.234.7.1")
	if err := e2.Remove(ctxT(t), task.Id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the task's files outlive Remove: %v", err)
	}
}
