package manager

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/kernel/config"
	"github.com/shoalhq/shoal/kernel/raftstore"
	"github.com/shoalhq/shoal/kernel/secrets"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// takeBackup saves a backup through the manager's control socket.
func takeBackup(t *testing.T, r *running) []byte {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+r.cfg.Manager.ControlSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := controlv1.NewBackupClient(conn).Save(ctx, &controlv1.SaveBackupRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return data
		}
		if err != nil {
			t.Fatal(sdk.FromGRPC(err))
		}
		data = append(data, msg.GetChunk()...)
	}
}

// backupWithSecret runs a manager, stores a service and a secret, and
// returns a backup, the manager's secrets key file and its config.
func backupWithSecret(t *testing.T) (data []byte, keyFile string, old config.Config) {
	t.Helper()
	r := start(t, testConfig(t, filepath.Join(t.TempDir(), "old")))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := r.client(t)
	if _, err := c.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec("web", "example.local/web:1", 0)}); err != nil {
		t.Fatal(err)
	}
	_, err := c.CreateSecret(ctx, &controlv1.CreateSecretRequest{Spec: &objectv1.SecretSpec{Annotations: &objectv1.Annotations{Name: "db-password"}, Data: []byte("hunter2")}})
	if err != nil {
		t.Fatal(err)
	}
	data = takeBackup(t, r)
	r.stop()
	keyFile = filepath.Join(t.TempDir(), "secrets.key")
	key, err := secrets.Load(secretsKeyFile(r.cfg))
	if err != nil {
		t.Fatal(err)
	}
	if err := secrets.Save(keyFile, key); err != nil {
		t.Fatal(err)
	}
	return data, keyFile, r.cfg
}

func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "backup.shoal")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRestoreFromBackup: a manager of a new data directory restored from a
// backup keeps the old manager's node ID (same address), holds the state,
// opens the secrets and takes writes.
func TestRestoreFromBackup(t *testing.T) {
	data, keyFile, old := backupWithSecret(t)
	b, err := raftstore.DecodeBackup(data)
	if err != nil {
		t.Fatal(err)
	}
	if b.Header.GetSecretsKeyId() == "" {
		t.Error("the header names no secrets key, with a secret stored")
	}
	for _, s := range b.Snapshot.GetSecrets() {
		if strings.Contains(string(s.GetSealed().GetCiphertext()), "hunter2") {
			t.Error("the secret's data is in the backup in the clear")
		}
	}
	oldID, err := ca.LoadIdentity(certDir(old))
	if err != nil {
		t.Fatal(err)
	}

	cfg := old
	cfg.Node.DataDir = filepath.Join(t.TempDir(), "data")
	out, err := Restore(cfg, writeTemp(t, data), keyFile, time.Now(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if !out.KeptNodeID || out.NodeID != oldID.NodeID() {
		t.Errorf("restored as %s (kept %v), want the old manager's ID %s", out.NodeID, out.KeptNodeID, oldID.NodeID())
	}
	r := start(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := r.client(t)
	if _, err := c.GetService(ctx, &controlv1.GetServiceRequest{Ref: "web"}); err != nil {
		t.Errorf("service web after the restore: %v", err)
	}
	if _, err := c.GetSecret(ctx, &controlv1.GetSecretRequest{Ref: "db-password"}); err != nil {
		t.Errorf("secret after the restore: %v", err)
	}
	if _, err := c.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec("api", "example.local/api:1", 0)}); err != nil {
		t.Errorf("write after the restore: %v", err)
	}
	if _, err := Restore(cfg, writeTemp(t, data), keyFile, time.Now(), slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("a second restore into the same data dir = %v, want a refusal", err)
	}
}

// TestRestoreRefusesBadInput: each bad input is refused naming what is
// wrong, and the data directory stays as it was.
func TestRestoreRefusesBadInput(t *testing.T) {
	data, keyFile, old := backupWithSecret(t)
	otherKey, err := secrets.Generate()
	if err != nil {
		t.Fatal(err)
	}
	otherKeyFile := filepath.Join(t.TempDir(), "other.key")
	if err := secrets.Save(otherKeyFile, otherKey); err != nil {
		t.Fatal(err)
	}
	corrupted := slices.Clone(data)
	corrupted[len(corrupted)-3] ^= 1
	version := slices.Clone(data)
	binary.BigEndian.PutUint32(version[8:], 9)

	for _, tc := range []struct {
		name    string
		data    []byte
		key     string
		want    string
		missing bool // the backup file does not exist
	}{
		{name: "truncated", data: data[:len(data)/2], key: keyFile, want: "truncated"},
		{name: "corrupted", data: corrupted, key: keyFile, want: "checksum mismatch"},
		{name: "foreign", data: []byte("#!/bin/sh\necho this is not a backup\n"), key: keyFile, want: "not a shoal backup"},
		{name: "wrong version", data: version, key: keyFile, want: "format version 9"},
		{name: "wrong secrets key", data: data, key: otherKeyFile, want: "not this cluster's secrets key"},
		{name: "no secrets key", data: data, want: "no secrets key was given"},
		{name: "no such file", missing: true, key: keyFile, want: "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := old
			cfg.Node.DataDir = filepath.Join(t.TempDir(), "data")
			path := filepath.Join(t.TempDir(), "missing.shoal")
			if !tc.missing {
				path = writeTemp(t, tc.data)
			}
			_, err := Restore(cfg, path, tc.key, time.Now(), slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Restore = %v, want an error saying %q", err, tc.want)
			}
			if _, err := os.Stat(cfg.Node.DataDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the data dir was created or written: %v", err)
			}
		})
	}

	t.Run("key in place is wrong", func(t *testing.T) {
		cfg := old
		cfg.Node.DataDir = filepath.Join(t.TempDir(), "data")
		if err := secrets.Save(secretsKeyFile(cfg), otherKey); err != nil {
			t.Fatal(err)
		}
		_, err := Restore(cfg, writeTemp(t, data), "", time.Now(), slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), "not this cluster's secrets key") {
			t.Fatalf("Restore = %v, want a refusal of the key", err)
		}
		entries, _ := os.ReadDir(cfg.Node.DataDir)
		if len(entries) != 1 {
			t.Errorf("the data dir holds %d entries, want the key alone", len(entries))
		}
	})
}

func TestDemoteManagers(t *testing.T) {
	data, _, _ := backupWithSecret(t)
	b, err := raftstore.DecodeBackup(data)
	if err != nil {
		t.Fatal(err)
	}
	snap := b.Snapshot
	keep := snap.GetNodes()[0].GetId()
	before := proto2text(snap.GetNodes()[0])
	snap.Nodes = append(snap.Nodes, &objectv1.Node{Id: "other", Role: objectv1.NodeRole_NODE_ROLE_MANAGER,
		ManagerStatus: &objectv1.ManagerStatus{ApiAddr: "10.0.0.9:4242"}, Status: &objectv1.NodeStatus{State: objectv1.NodeState_NODE_STATE_READY}})
	got := demoteManagers(snap, keep, "gone")
	if !slices.Equal(got, []string{"other"}) {
		t.Errorf("demoted %v, want [other]", got)
	}
	o := snap.GetNodes()[1]
	if o.GetRole() != objectv1.NodeRole_NODE_ROLE_WORKER || o.GetManagerStatus() != nil || o.GetStatus().GetState() != objectv1.NodeState_NODE_STATE_DOWN || o.GetStatus().GetMessage() != "gone" {
		t.Errorf("demoted node = %v", o)
	}
	if proto2text(snap.GetNodes()[0]) != before {
		t.Error("the kept manager changed")
	}
}

func proto2text(n *objectv1.Node) string { return n.String() }
