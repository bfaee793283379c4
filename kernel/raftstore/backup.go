package raftstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// A backup file is the magic, the format version and the header's length,
// the header (controlv1.BackupHeader) and the payload: the state as a
// raftv1.Snapshot, exactly as Raft snapshots hold it. See backup.proto.
const (
	// BackupMagic opens every backup file.
	BackupMagic = "SHOALBAK"
	// BackupFormat is the file format version this code writes and reads.
	BackupFormat = 1
	// maxBackupHeader bounds the header's length: a real one is a few
	// hundred bytes, so a larger length means a foreign or damaged file.
	maxBackupHeader = 64 << 10
	prefixLen       = len(BackupMagic) + 4 + 4
)

// ErrBadBackup is the kind of every error about a backup file that is not
// one this code can restore. It is sdk.ErrInvalidArgument underneath.
var ErrBadBackup = fmt.Errorf("not a usable shoal backup: %w", sdk.ErrInvalidArgument)

// Backup is a decoded, verified backup file.
type Backup struct {
	Header   *controlv1.BackupHeader
	Snapshot *raftv1.Snapshot
}

// Backup returns a backup of the state as of now: it waits for every
// entry committed before the call to be applied (a Raft barrier), then
// snapshots the store. Leader only: a follower's callers forward to the
// leader, so that the backup holds every acknowledged write.
func (n *Node) Backup(ctx context.Context, now time.Time, version string) ([]byte, *controlv1.BackupHeader, error) {
	if !n.IsLeader() {
		return nil, nil, ErrNotLeader
	}
	term := n.raft.CurrentTerm()
	if err := n.Barrier(ctx); err != nil {
		return nil, nil, fmt.Errorf("backup: barrier: %w: %w", err, sdk.ErrUnavailable)
	}
	snap := n.st.Snapshot()
	h := &controlv1.BackupHeader{
		RaftIndex:    snap.GetIndex(),
		RaftTerm:     term,
		Created:      timestamppb.New(now),
		ShoalVersion: version,
		LeaderId:     n.cfg.NodeID,
	}
	data, err := EncodeBackup(h, snap)
	if err != nil {
		return nil, nil, err
	}
	return data, h, nil
}

// EncodeBackup returns the backup file of snap. It fills in h's cluster
// ID, payload checksum and size and secrets key ID from snap.
func EncodeBackup(h *controlv1.BackupHeader, snap *raftv1.Snapshot) ([]byte, error) {
	if len(snap.GetClusters()) != 1 || snap.GetClusters()[0].GetId() == "" {
		return nil, fmt.Errorf("backup: the state holds no cluster object yet: %w", sdk.ErrFailedPrecondition)
	}
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(snap)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	sum := sha256.Sum256(payload)
	h = proto.CloneOf(h)
	h.ClusterId = snap.GetClusters()[0].GetId()
	h.PayloadSha256 = sum[:]
	h.PayloadSize = uint64(len(payload))
	h.SecretsKeyId = ""
	for _, s := range snap.GetSecrets() {
		if id := s.GetSealed().GetKeyId(); id != "" {
			h.SecretsKeyId = id
			break
		}
	}
	head, err := proto.MarshalOptions{Deterministic: true}.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	var b bytes.Buffer
	b.Grow(prefixLen + len(head) + len(payload))
	b.WriteString(BackupMagic)
	binary.Write(&b, binary.BigEndian, uint32(BackupFormat))
	binary.Write(&b, binary.BigEndian, uint32(len(head)))
	b.Write(head)
	b.Write(payload)
	return b.Bytes(), nil
}

// DecodeBackup checks a backup file and decodes it: the magic, the format
// version, the header, the payload's length and checksum, and that the
// payload is a state the store accepts, of the cluster the header names.
// Every error wraps ErrBadBackup and says what is wrong.
func DecodeBackup(data []byte) (*Backup, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrBadBackup)
	}
	if len(data) == 0 {
		return nil, bad("the file is empty")
	}
	if len(data) < len(BackupMagic) || string(data[:len(BackupMagic)]) != BackupMagic {
		if len(data) < len(BackupMagic) && bytes.HasPrefix([]byte(BackupMagic), data) {
			return nil, bad("truncated: %d bytes, shorter than the header", len(data))
		}
		return nil, bad("not a shoal backup file (no %q magic at its start)", BackupMagic)
	}
	if len(data) < prefixLen {
		return nil, bad("truncated: %d bytes, shorter than the header", len(data))
	}
	if v := binary.BigEndian.Uint32(data[len(BackupMagic):]); v != BackupFormat {
		return nil, bad("format version %d, this shoal reads version %d", v, BackupFormat)
	}
	hlen := binary.BigEndian.Uint32(data[len(BackupMagic)+4:])
	if hlen > maxBackupHeader {
		return nil, bad("header length %d is over %d bytes: the file is damaged", hlen, maxBackupHeader)
	}
	rest := data[prefixLen:]
	if uint64(len(rest)) < uint64(hlen) {
		return nil, bad("truncated: the header needs %d bytes, %d left", hlen, len(rest))
	}
	h := &controlv1.BackupHeader{}
	if err := proto.Unmarshal(rest[:hlen], h); err != nil {
		return nil, bad("header: %v", err)
	}
	payload := rest[hlen:]
	switch {
	case h.GetClusterId() == "":
		return nil, bad("the header names no cluster")
	case uint64(len(payload)) < h.GetPayloadSize():
		return nil, bad("truncated: the payload is %d of %d bytes", len(payload), h.GetPayloadSize())
	case uint64(len(payload)) > h.GetPayloadSize():
		return nil, bad("%d bytes after the payload's %d: the file is damaged", uint64(len(payload))-h.GetPayloadSize(), h.GetPayloadSize())
	}
	if sum := sha256.Sum256(payload); !bytes.Equal(sum[:], h.GetPayloadSha256()) {
		return nil, bad("checksum mismatch: the payload's SHA-256 is %x, the header says %x: the file is corrupted", sum, h.GetPayloadSha256())
	}
	snap := &raftv1.Snapshot{}
	if err := proto.Unmarshal(payload, snap); err != nil {
		return nil, bad("payload: %v", err)
	}
	// The store checks everything it would refuse when Raft restores it.
	check := proto.CloneOf(snap)
	if err := state.New().Restore(check); err != nil {
		return nil, bad("payload: %v", err)
	}
	cs := snap.GetClusters()
	if len(cs) != 1 {
		return nil, bad("the state holds %d cluster objects, want 1", len(cs))
	}
	if cs[0].GetId() != h.GetClusterId() {
		return nil, bad("the header names cluster %s but the state holds cluster %s", h.GetClusterId(), cs[0].GetId())
	}
	if len(cs[0].GetRootCa().GetKeyPem()) == 0 || len(cs[0].GetRootCa().GetCertPem()) == 0 {
		return nil, bad("the cluster object holds no root CA certificate and key")
	}
	return &Backup{Header: h, Snapshot: snap}, nil
}

// ReadBackupFile reads and checks the backup file at path (DecodeBackup).
func ReadBackupFile(path string) (*Backup, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("backup file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("backup file %s: %w", path, err)
	}
	b, err := DecodeBackup(data)
	if err != nil {
		return nil, fmt.Errorf("backup file %s: %w", path, err)
	}
	return b, nil
}

// errHasState: seeding refuses a directory that already holds Raft state.
var errHasState = errors.New("the raft directory already holds state")
