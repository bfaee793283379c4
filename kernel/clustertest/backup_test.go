package clustertest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoalhq/shoal/internal/logbuf"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// startWith starts the manager's process with extra agent flags
// (--restore, --force-new-cluster); Start starts it plainly.
func (m *Manager) startWith(args ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return errors.New("already running")
	}
	m.log = &logbuf.Buffer{}
	cmd := exec.Command(m.bin, append([]string{"agent", "--config", m.config}, args...)...)
	cmd.Stdout = m.log
	cmd.Stderr = m.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	m.cmd = cmd
	m.done = make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(m.done)
	return nil
}

// shoalCLI runs the shoal binary's client against m's control socket.
func shoalCLI(t *testing.T, m *Manager, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(Binary(t), append([]string{"--host", "unix://" + m.Socket}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// runningTasks returns the service's tasks desired and observed running,
// by ID.
func runningTasks(ctx context.Context, client controlv1.ControlClient, serviceID string) (map[string]*objectv1.Task, error) {
	resp, err := client.ListTasks(ctx, &controlv1.ListTasksRequest{ServiceIds: []string{serviceID}})
	if err != nil {
		return nil, err
	}
	out := map[string]*objectv1.Task{}
	for _, tk := range resp.GetTasks() {
		if tk.GetDesiredState() == objectv1.TaskState_TASK_STATE_RUNNING && tk.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_RUNNING {
			out[tk.GetId()] = tk
		}
	}
	return out, nil
}

// TestDisasterRestoreFromBackup is the drill of the README: three managers
// and a worker running a service's tasks; a backup is taken through a
// follower; all three managers are killed and their data directories
// deleted; a new manager started from the backup at the address of one of
// them leads a one-manager cluster. The worker reconnects to it and its
// tasks keep running untouched (same tasks, never restarted), the services
// and the secret are all there, and the cluster takes writes.
func TestDisasterRestoreFromBackup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := Start(t, 3, Options{})
	ws := StartWorkers(t, c, 1, WorkerOptions{})
	w := ws[0]
	c.WaitReady(t, ws, 60*time.Second)
	leader := c.Leader(t, 30*time.Second)
	client := leader.Client(t)
	ctx := context.Background()

	webID, before := createBackupState(ctx, t, c, client)
	starts := w.Starts()
	backup, keyFile, target := takeBackup(t, c, leader)
	destroyManagers(t, c, target, backup)

	// The recovery, at the address of the first manager, which the worker
	// was told at its start.
	if err := target.startWith("--restore", backup, "--secrets-key", keyFile); err != nil {
		t.Fatal(err)
	}
	if l := c.Leader(t, 60*time.Second); l != target {
		t.Fatalf("leader is %s, want the restored %s", l.Name, target.Name)
	}
	client = target.Client(t)
	c.WaitReady(t, ws, 120*time.Second)

	checkWorkerKeptTasks(ctx, t, c, client, w, webID, before, starts)
	checkRestoredState(ctx, t, c, client, target, w)

	// Started again without --restore, it keeps its state.
	target.Terminate()
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	c.Leader(t, 60*time.Second)
	c.eventually(t, 30*time.Second, func(ctx context.Context) error {
		_, err := target.Client(t).GetService(ctx, &controlv1.GetServiceRequest{Ref: "after-restore"})
		return err
	})
}

// createBackupState creates what the backup of TestDisasterRestoreFromBackup
// holds: the service web with 3 replicas, the service idle and a secret. It
// returns web's ID and its running tasks.
func createBackupState(ctx context.Context, t *testing.T, c *Cluster, client controlv1.ControlClient) (webID string, before map[string]*objectv1.Task) {
	t.Helper()
	spec := serviceSpec("web")
	spec.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 3}}
	web, err := client.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	webID = web.GetService().GetId()
	if _, err := client.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: serviceSpec("idle")}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CreateSecret(ctx, &controlv1.CreateSecretRequest{Spec: &objectv1.SecretSpec{
		Annotations: &objectv1.Annotations{Name: "db-password"}, Data: []byte("hunter2")}}); err != nil {
		t.Fatal(err)
	}
	c.eventually(t, 60*time.Second, func(ctx context.Context) error {
		before, err = runningTasks(ctx, client, webID)
		if err != nil {
			return err
		}
		if len(before) != 3 {
			return fmt.Errorf("%d of 3 tasks running", len(before))
		}
		return nil
	})
	return webID, before
}

// takeBackup takes a backup through a follower and the CLI, and keeps the
// secrets key of the first manager, target, beside it.
func takeBackup(t *testing.T, c *Cluster, leader *Manager) (backup, keyFile string, target *Manager) {
	t.Helper()
	// The backup, through a follower and the CLI.
	var follower *Manager
	for _, m := range c.Managers {
		if m != leader {
			follower = m
			break
		}
	}
	backup = filepath.Join(t.TempDir(), "cluster.shoalbak")
	out, err := shoalCLI(t, follower, "cluster", "backup", backup)
	if err != nil {
		t.Fatalf("shoal cluster backup through follower %s: %v\n%s", follower.Name, err, out)
	}
	t.Logf("backup: %s", strings.TrimSpace(out))
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	// The key is kept beside the backup, as the README says.
	target = c.Managers[0]
	key, err := os.ReadFile(filepath.Join(target.Dir, "data", "secrets.key"))
	if err != nil {
		t.Fatal(err)
	}
	keyFile = filepath.Join(t.TempDir(), "secrets.key")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	return backup, keyFile, target
}

// destroyManagers kills every manager and removes its data directory, then
// checks that a restore with a wrong key is refused and writes nothing.
func destroyManagers(t *testing.T, c *Cluster, target *Manager, backup string) {
	t.Helper()
	// The disaster: every manager and its data directory, gone.
	for _, m := range c.Managers {
		m.Kill()
		if err := os.RemoveAll(filepath.Join(m.Dir, "data")); err != nil {
			t.Fatal(err)
		}
	}

	// A wrong key is refused and leaves the data directory empty.
	wrongKey := filepath.Join(t.TempDir(), "wrong.key")
	if err := os.WriteFile(wrongKey, make([]byte, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(target.bin, "agent", "--config", target.config, "--restore", backup, "--secrets-key", wrongKey)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "not this cluster's secrets key") {
		t.Fatalf("restore with a wrong key: %v\n%s", err, out)
	}
	if entries, _ := os.ReadDir(filepath.Join(target.Dir, "data")); len(entries) != 0 {
		t.Fatalf("a refused restore wrote %d entries into the data dir", len(entries))
	}
}

// checkWorkerKeptTasks checks that the worker runs the same tasks as before
// the disaster, never restarted.
func checkWorkerKeptTasks(ctx context.Context, t *testing.T, c *Cluster, client controlv1.ControlClient, w *Worker, webID string, before map[string]*objectv1.Task, starts int) {
	t.Helper()
	// The worker's tasks: the same ones, running, never restarted.
	c.eventually(t, 60*time.Second, func(ctx context.Context) error {
		after, err := runningTasks(ctx, client, webID)
		if err != nil {
			return err
		}
		if got, want := slices.Sorted(maps.Keys(after)), slices.Sorted(maps.Keys(before)); !slices.Equal(got, want) {
			return fmt.Errorf("running tasks %v, want the same as before the disaster %v", got, want)
		}
		return nil
	})
	if got := w.Starts(); got != starts {
		t.Errorf("the worker started tasks %d times, %d before the disaster: tasks were restarted", got, starts)
	}
	tasks, err := w.Exec.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != len(before) {
		t.Errorf("the worker's executor holds %d tasks, want the %d from before", len(tasks), len(before))
	}
	for _, tk := range tasks {
		if before[tk.TaskID] == nil {
			t.Errorf("the worker runs task %s, which was not there before", tk.TaskID)
		}
	}
}

// checkRestoredState checks the restored services and secret, that writes
// succeed, and that the lost managers are down workers that node rm forgets.
func checkRestoredState(ctx context.Context, t *testing.T, c *Cluster, client controlv1.ControlClient, target *Manager, w *Worker) {
	t.Helper()
	// The state, the secret and writes.
	svcs, err := client.ListServices(ctx, &controlv1.ListServicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range svcs.GetServices() {
		names = append(names, s.GetSpec().GetAnnotations().GetName())
	}
	if slices.Sort(names); !slices.Equal(names, []string{"idle", "web"}) {
		t.Errorf("services after the restore: %v, want idle and web", names)
	}
	if _, err := client.GetSecret(ctx, &controlv1.GetSecretRequest{Ref: "db-password"}); err != nil {
		t.Errorf("secret after the restore: %v", err)
	}
	c.eventually(t, 30*time.Second, func(ctx context.Context) error {
		_, err := client.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: serviceSpec("after-restore")})
		return err
	})
	// Workers are sent to the restored manager alone: the others are down
	// workers now.
	nodes, err := client.ListNodes(ctx, &controlv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	managers := 0
	for _, n := range nodes.GetNodes() {
		if n.GetManagerStatus() != nil {
			managers++
			if n.GetManagerStatus().GetApiAddr() != target.APIAddr {
				t.Errorf("node %s still has a manager status at %s", n.GetId(), n.GetManagerStatus().GetApiAddr())
			}
		}
	}
	if managers != 1 {
		t.Errorf("%d managers recorded, want the restored one", managers)
	}
	// The lost managers are down workers, which `shoal node rm` forgets.
	for _, n := range nodes.GetNodes() {
		if n.GetId() != w.NodeID && n.GetManagerStatus() == nil {
			if out, err := shoalCLI(t, target, "node", "rm", n.GetId()); err != nil {
				t.Errorf("node rm %s (a lost manager): %v\n%s", n.GetId(), err, out)
			}
		}
	}
}

// TestForceNewCluster: two of three managers are lost for good; the
// survivor, restarted with --force-new-cluster, leads alone with its state
// and takes writes again.
func TestForceNewCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := Start(t, 3, Options{})
	leader := c.Leader(t, 30*time.Second)
	ctx := context.Background()
	if _, err := leader.Client(t).CreateService(ctx, &controlv1.CreateServiceRequest{Spec: serviceSpec("before")}); err != nil {
		t.Fatal(err)
	}
	survivor := c.Managers[2]
	c.eventually(t, 30*time.Second, func(ctx context.Context) error {
		_, err := survivor.Client(t).GetService(LocalRead(ctx), &controlv1.GetServiceRequest{Ref: "before"})
		return err
	})
	for _, m := range c.Managers[:2] {
		m.Kill()
		if err := os.RemoveAll(filepath.Join(m.Dir, "data")); err != nil {
			t.Fatal(err)
		}
	}
	// Without quorum the survivor takes no writes.
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := survivor.Client(t).CreateService(wctx, &controlv1.CreateServiceRequest{Spec: serviceSpec("no-quorum")})
	cancel()
	if err == nil {
		t.Fatal("a write succeeded without quorum")
	}

	survivor.Terminate()
	if err := survivor.startWith("--force-new-cluster"); err != nil {
		t.Fatal(err)
	}
	if l := c.Leader(t, 60*time.Second); l != survivor {
		t.Fatalf("leader is %s, want the survivor %s", l.Name, survivor.Name)
	}
	client := survivor.Client(t)
	c.eventually(t, 30*time.Second, func(ctx context.Context) error {
		_, err := client.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: serviceSpec("after")})
		return err
	})
	if _, err := client.GetService(ctx, &controlv1.GetServiceRequest{Ref: "before"}); err != nil {
		t.Errorf("the state from before: %v", err)
	}
	nodes, err := client.ListNodes(ctx, &controlv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.GetNodes() {
		if ms := n.GetManagerStatus(); ms != nil && ms.GetApiAddr() != survivor.APIAddr {
			t.Errorf("lost manager %s still has a manager status", n.GetId())
		}
	}
}
