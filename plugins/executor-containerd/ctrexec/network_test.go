package ctrexec

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// fakeNetwork gives each task a real, empty network namespace made with
// `ip netns`, and records the calls.
type fakeNetwork struct {
	mu       sync.Mutex
	attached map[string][]*objectv1.NetworkAttachment
	detached []string
}

func netnsName(taskID string) string { return "shoaltest-" + taskID }

func (f *fakeNetwork) Attach(ctx context.Context, taskID string, nets []*objectv1.NetworkAttachment, _ []*objectv1.PortConfig) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	path := "/run/netns/" + netnsName(taskID)
	if _, ok := f.attached[taskID]; !ok {
		if out, err := exec.CommandContext(ctx, "ip", "netns", "add", netnsName(taskID)).CombinedOutput(); err != nil {
			return "", fmt.Errorf("ip netns add: %v: %s", err, out)
		}
		f.attached[taskID] = nets
	}
	return path, nil
}

func (f *fakeNetwork) Detach(ctx context.Context, taskID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.detached = append(f.detached, taskID)
	if _, ok := f.attached[taskID]; ok {
		delete(f.attached, taskID)
		if out, err := exec.CommandContext(ctx, "ip", "netns", "delete", netnsName(taskID)).CombinedOutput(); err != nil {
			return fmt.Errorf("ip netns delete: %v: %s", err, out)
		}
	}
	return nil
}

// netnsInode is the inode of a network namespace file.
func netnsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}

func TestTaskNetworks(t *testing.T) {
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) is not installed: run scripts/deps.sh")
	}
	address := startContainerd(t)
	fake := &fakeNetwork{attached: map[string][]*objectv1.NetworkAttachment{}}
	e := New(Options{LogDriver: env.driver, NewNetwork: func(string) (Network, error) { return fake, nil }})
	t.Cleanup(func() { e.Close() })
	if err := e.Configure(ctxT(t), executor.NodeInfo{StateDir: t.TempDir(), ContainerdAddress: address}, []byte(`namespace = "`+testNamespace+`"`)); err != nil {
		t.Fatal(err)
	}

	host := newTask(t, "out:up", "sleep:inf")
	netted := newTask(t, "out:up", "sleep:inf")
	netted.Networks = []*objectv1.NetworkAttachment{{NetworkId: "n1", NetworkName: "front", Addr: "10.200.3.7/24", Gateway: "10.200.3.1"}}
	run(t, e, host)
	run(t, e, netted)

	hostInfo, _ := e.Inspect(ctxT(t), host.Id)
	nettedInfo, _ := e.Inspect(ctxT(t), netted.Id)
	// This thread's namespace, not /proc/self's: that is the main
	// thread's, which package tasknet may have left parked in a task's
	// namespace (a goroutine that exits locked to the main thread).
	runtime.LockOSThread()
	self := netnsInode(t, "/proc/thread-self/ns/net")
	runtime.UnlockOSThread()
	if got := netnsInode(t, fmt.Sprintf("/proc/%d/ns/net", hostInfo.Pid)); got != self {
		t.Errorf("a task without networks is in netns %d, want the node's (%d)", got, self)
	}
	want := netnsInode(t, "/run/netns/"+netnsName(netted.Id))
	if got := netnsInode(t, fmt.Sprintf("/proc/%d/ns/net", nettedInfo.Pid)); got != want {
		t.Errorf("a task with networks is in netns %d, want the one Attach made (%d)", got, want)
	}
	fake.mu.Lock()
	if nets := fake.attached[netted.Id]; len(nets) != 1 || nets[0].GetNetworkId() != "n1" {
		t.Errorf("Attach got %v, want the task's networks", nets)
	}
	if _, ok := fake.attached[host.Id]; ok {
		t.Error("Attach was called for a task without networks")
	}
	fake.mu.Unlock()

	// A task whose process exits gives its networks back when Wait
	// returns (the manager frees its addresses then), and keeps its
	// container and logs until Remove.
	ended := newTask(t, "out:bye", "exit:0")
	ended.Networks = []*objectv1.NetworkAttachment{{NetworkId: "n1", NetworkName: "front", Addr: "10.200.3.8/24", Gateway: "10.200.3.1"}}
	run(t, e, ended)
	if _, err := e.Wait(ctxT(t), ended.Id); err != nil {
		t.Fatal(err)
	}
	fake.mu.Lock()
	if _, ok := fake.attached[ended.Id]; ok {
		t.Errorf("Wait returned with the ended task still attached (detached: %v)", fake.detached)
	}
	fake.mu.Unlock()
	if _, err := os.Stat("/run/netns/" + netnsName(ended.Id)); !os.IsNotExist(err) {
		t.Errorf("the ended task's netns still exists after Wait: %v", err)
	}
	if _, err := e.Inspect(ctxT(t), ended.Id); err != nil {
		t.Errorf("the ended task is gone before Remove: %v", err)
	}
	var lines []string
	if err := e.Logs(ctxT(t), ended.Id, executor.LogOptions{Tail: -1}, func(l executor.LogEntry) error {
		lines = append(lines, string(l.Line))
		return nil
	}); err != nil || !slices.Contains(lines, "bye") {
		t.Errorf("the ended task's logs after Wait: %q, %v; want its line", lines, err)
	}

	// So does a prepared task that will never start, once stopped.
	unstarted := newTask(t, "sleep:inf")
	unstarted.Networks = []*objectv1.NetworkAttachment{{NetworkId: "n1", NetworkName: "front", Addr: "10.200.3.9/24", Gateway: "10.200.3.1"}}
	if err := e.Prepare(ctxT(t), unstarted, nil, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Remove(context.Background(), unstarted.Id) })
	if err := e.Stop(ctxT(t), unstarted.Id, "", 0); err != nil {
		t.Fatal(err)
	}
	fake.mu.Lock()
	if _, ok := fake.attached[unstarted.Id]; ok {
		t.Errorf("Stop of a task that never started returned with it still attached (detached: %v)", fake.detached)
	}
	fake.mu.Unlock()

	if err := e.Remove(ctxT(t), netted.Id); err != nil {
		t.Fatal(err)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if _, ok := fake.attached[netted.Id]; ok {
		t.Errorf("Remove did not detach the task (detached: %v)", fake.detached)
	}
	if _, err := os.Stat("/run/netns/" + netnsName(netted.Id)); !os.IsNotExist(err) {
		t.Errorf("netns still exists after Remove: %v", err)
	}
}

func (f *fakeNetwork) Attached() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]string, 0, len(f.attached))
	for id := range f.attached {
		ids = append(ids, id)
	}
	return ids, nil
}

// TestSweepsAttachmentsOfRemovedContainers: a new executor process detaches
// the networks of tasks whose container is gone (a Remove interrupted after
// deleting the container) and keeps those of tasks that exist.
func TestSweepsAttachmentsOfRemovedContainers(t *testing.T) {
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) is not installed: run scripts/deps.sh")
	}
	address := startContainerd(t)
	fake := &fakeNetwork{attached: map[string][]*objectv1.NetworkAttachment{}}
	stateDir := t.TempDir()
	configure := func() *Executor {
		e := New(Options{LogDriver: env.driver, NewNetwork: func(string) (Network, error) { return fake, nil }})
		t.Cleanup(func() { e.Close() })
		if err := e.Configure(ctxT(t), executor.NodeInfo{StateDir: stateDir, ContainerdAddress: address}, []byte(`namespace = "`+testNamespace+`"`)); err != nil {
			t.Fatal(err)
		}
		return e
	}
	e := configure()
	kept := newTask(t, "out:up", "sleep:inf")
	kept.Networks = []*objectv1.NetworkAttachment{{NetworkId: "n1", NetworkName: "front", Addr: "10.200.3.7/24", Gateway: "10.200.3.1"}}
	run(t, e, kept)
	t.Cleanup(func() { e.Remove(context.Background(), kept.GetId()) })
	orphan := "orphan" + kept.GetId()[6:]
	if _, err := fake.Attach(ctxT(t), orphan, kept.Networks, nil); err != nil {
		t.Fatal(err)
	}

	configure()
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if _, ok := fake.attached[orphan]; ok {
		t.Errorf("the attachment of %s, which has no container, was kept", orphan)
	}
	if _, ok := fake.attached[kept.GetId()]; !ok {
		t.Errorf("the attachment of %s, whose container exists, was detached (detached: %v)", kept.GetId(), fake.detached)
	}
}
