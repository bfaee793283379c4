package raftstore

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/kernel/state"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// withCluster writes the cluster object and a service through the leader.
func withCluster(t *testing.T, c *testCluster) *Node {
	t.Helper()
	leader := c.waitLeader()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := leader.Update(ctx, func(tx *state.Tx) error {
		if err := tx.CreateCluster(&objectv1.Cluster{Id: "cl1", Spec: &objectv1.ClusterSpec{Annotations: &objectv1.Annotations{Name: "default"}}, RootCa: c.root}); err != nil {
			return err
		}
		return tx.CreateService(svc("s1", "web"))
	})
	if err != nil {
		t.Fatal(err)
	}
	return leader
}

func TestBackupIsTheLeadersStateAndDecodes(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := withCluster(t, c)
	for _, tn := range c.nodes {
		if tn.n != leader {
			if _, _, err := tn.n.Backup(context.Background(), time.Now(), "test"); !errors.Is(err, ErrNotLeader) {
				t.Errorf("follower Backup = %v, want ErrNotLeader", err)
			}
		}
	}
	data, h, err := leader.Backup(context.Background(), time.Unix(1700000000, 0), "v-test")
	if err != nil {
		t.Fatal(err)
	}
	b, err := DecodeBackup(data)
	if err != nil {
		t.Fatal(err)
	}
	if b.Header.GetClusterId() != "cl1" || b.Header.GetRaftIndex() != h.GetRaftIndex() || b.Header.GetRaftIndex() == 0 ||
		b.Header.GetRaftTerm() == 0 || b.Header.GetShoalVersion() != "v-test" || b.Header.GetCreated().GetSeconds() != 1700000000 {
		t.Errorf("header = %v", b.Header)
	}
	if len(b.Snapshot.GetServices()) != 1 || b.Snapshot.GetServices()[0].GetId() != "s1" {
		t.Errorf("services = %v, want s1", b.Snapshot.GetServices())
	}
	if b.Snapshot.GetIndex() != h.GetRaftIndex() {
		t.Errorf("snapshot index %d, header %d", b.Snapshot.GetIndex(), h.GetRaftIndex())
	}
}

func testBackup(t *testing.T) []byte {
	t.Helper()
	root, err := ca.NewRootCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	snap := &raftv1.Snapshot{
		Version:  state.SnapshotVersion,
		Index:    42,
		Clusters: []*objectv1.Cluster{{Id: "cl1", Spec: &objectv1.ClusterSpec{Annotations: &objectv1.Annotations{Name: "default"}}, RootCa: root}},
		Services: []*objectv1.Service{svc("s1", "web")},
	}
	data, err := EncodeBackup(&controlv1.BackupHeader{RaftIndex: 42, RaftTerm: 3}, snap)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestDecodeBackupRefusesBadFiles(t *testing.T) {
	good := testBackup(t)
	if _, err := DecodeBackup(good); err != nil {
		t.Fatalf("good backup: %v", err)
	}
	hlen := int(binary.BigEndian.Uint32(good[12:]))
	corrupt := func(i int) []byte {
		b := append([]byte(nil), good...)
		b[i] ^= 0x40
		return b
	}
	version := append([]byte(nil), good...)
	binary.BigEndian.PutUint32(version[8:], 2)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"foreign", []byte("PK\x03\x04 a zip file, say, with more bytes than the header"), "not a shoal backup"},
		{"magic only", good[:8], "truncated"},
		{"truncated in the header", good[:16+hlen/2], "truncated"},
		{"truncated in the payload", good[:len(good)-10], "truncated"},
		{"one byte short", good[:len(good)-1], "truncated"},
		{"trailing bytes", append(append([]byte(nil), good...), 0), "damaged"},
		{"corrupted payload", corrupt(len(good) - 5), "checksum mismatch"},
		{"wrong version", version, "format version 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeBackup(tc.data)
			if !errors.Is(err, ErrBadBackup) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("DecodeBackup = %v, want ErrBadBackup saying %q", err, tc.want)
			}
		})
	}
	// Every cut of the file is refused.
	for n := range len(good) {
		if _, err := DecodeBackup(good[:n]); !errors.Is(err, ErrBadBackup) {
			t.Fatalf("first %d of %d bytes: %v, want ErrBadBackup", n, len(good), err)
		}
	}
}

// TestSeedStartsAOneVoterGroup restores a backup into a new node's empty
// directory: it leads a group of its own, holds the state and takes writes.
func TestSeedStartsAOneVoterGroup(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := withCluster(t, c)
	data, _, err := leader.Backup(context.Background(), time.Now(), "test")
	if err != nil {
		t.Fatal(err)
	}
	c.stop()
	b, err := DecodeBackup(data)
	if err != nil {
		t.Fatal(err)
	}

	base := t.TempDir()
	server, client := c.tlsFor("restored", filepath.Join(base, "certs"))
	addr := freeAddr(t)
	cfg := Config{NodeID: "restored", Dir: filepath.Join(base, "raft"), BindAddr: addr, AdvertiseAddr: addr,
		ServerTLS: server, ClientTLS: client, Logger: slog.New(slog.DiscardHandler)}
	if err := Seed(cfg, b.Snapshot, b.Header.GetRaftTerm()); err != nil {
		t.Fatal(err)
	}
	if err := Seed(cfg, b.Snapshot, b.Header.GetRaftTerm()); err == nil || !strings.Contains(err.Error(), "already holds state") {
		t.Errorf("second Seed = %v, want a refusal", err)
	}
	r := &testCluster{tb: t, root: c.root}
	r.nodes = []*testNode{r.start(cfg)}
	t.Cleanup(r.stop)
	n := r.waitLeader()
	checkRestored(t, n, b.Snapshot.GetIndex(), b.Header.GetRaftTerm())
}

func checkRestored(t *testing.T, n *Node, index, term uint64) {
	t.Helper()
	var web *objectv1.Service
	n.Store().View(func(tx *state.ReadTx) { web = tx.ServiceByName("web") })
	if web == nil {
		t.Fatal("service web is missing after the restore")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.Update(ctx, func(tx *state.Tx) error { return tx.CreateService(svc("s2", "db")) }); err != nil {
		t.Fatalf("write after the restore: %v", err)
	}
	if got := n.appliedIndex(); got <= index {
		t.Errorf("applied index %d after a write, want past the backup's %d", got, index)
	}
	if got := n.raft.CurrentTerm(); got <= term {
		t.Errorf("term %d, want past the backup's %d", got, term)
	}
	ms, err := n.Members()
	if err != nil || len(ms) != 1 || ms[0].NodeID != n.cfg.NodeID {
		t.Errorf("members = %v, %v; want this node alone", ms, err)
	}
}

// TestForceNewClusterKeepsTheState: a survivor of a three-node group,
// whose peers are gone, is made a group of its own with its state.
func TestForceNewClusterKeepsTheState(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := withCluster(t, c)
	c.waitApplied(leader.appliedIndex())
	var term uint64
	survivor := c.nodes[2]
	term = survivor.n.raft.CurrentTerm()
	index := survivor.n.appliedIndex()
	c.stop()

	edited := false
	if err := ForceNewCluster(survivor.cfg, func(snap *raftv1.Snapshot) { edited = len(snap.GetServices()) == 1 }); err != nil {
		t.Fatal(err)
	}
	if !edited {
		t.Error("edit did not see the state")
	}
	cfg := survivor.cfg
	cfg.Bootstrap = false
	r := &testCluster{tb: t, root: c.root}
	r.nodes = []*testNode{r.start(cfg)}
	t.Cleanup(r.stop)
	checkRestored(t, r.waitLeader(), index, term-1)
}

func TestForceNewClusterRefusesAnEmptyDirectory(t *testing.T) {
	dir := t.TempDir()
	err := ForceNewCluster(Config{NodeID: "n", AdvertiseAddr: "127.0.0.1:1", Dir: dir}, nil)
	if err == nil || !strings.Contains(err.Error(), "no raft state") {
		t.Errorf("ForceNewCluster = %v, want a refusal", err)
	}
}
