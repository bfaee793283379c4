package controlapi

import (
	"bytes"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/secrets"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func newSecretServer(t *testing.T) (*Server, *leaderRaft, *secrets.Keyring) {
	t.Helper()
	key, err := secrets.Generate()
	if err != nil {
		t.Fatal(err)
	}
	k, err := secrets.New(key)
	if err != nil {
		t.Fatal(err)
	}
	h := &secrets.Holder{}
	h.Set(k)
	r := &leaderRaft{st: state.New()}
	return NewServer(r, r.st, nil, slog.New(slog.DiscardHandler), WithSecrets(h)), r, k
}

func secretSpec(name, data string) *objectv1.SecretSpec {
	return &objectv1.SecretSpec{Annotations: &objectv1.Annotations{Name: name}, Data: []byte(data)}
}

// TestSecretNeverInAnswersOrLog: the data goes into the store only sealed,
// and no answer carries it or its sealed form.
func TestSecretNeverInAnswersOrLog(t *testing.T) {
	s, r, k := newSecretServer(t)
	ctx := t.Context()
	const data = "correct-horse-battery-staple"
	created, err := s.CreateSecret(ctx, &controlv1.CreateSecretRequest{Spec: secretSpec("db_password", data)})
	if err != nil {
		t.Fatal(err)
	}
	sec := created.GetSecret()
	if sec.GetId() == "" || sec.GetSize() != int64(len(data)) || sec.GetDigest() != k.Digest([]byte(data)) {
		t.Errorf("CreateSecret = %v", sec)
	}
	got, err := s.GetSecret(ctx, &controlv1.GetSecretRequest{Ref: "db_password"})
	if err != nil {
		t.Fatal(err)
	}
	list, err := s.ListSecrets(ctx, &controlv1.ListSecretsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []proto.Message{created, got, list} {
		b, _ := proto.Marshal(m)
		if bytes.Contains(b, []byte(data)) {
			t.Errorf("%T carries the data", m)
		}
		if strings.Contains(string(b), "sk1-") {
			t.Errorf("%T carries the sealed data", m)
		}
	}
	// The store (hence the Raft log and snapshots) holds it sealed only,
	// and the key opens it.
	var stored *objectv1.Secret
	r.st.View(func(tx *state.ReadTx) { stored = tx.Secret(sec.GetId()) })
	b, _ := proto.Marshal(r.st.Snapshot())
	if bytes.Contains(b, []byte(data)) {
		t.Error("the snapshot holds the data in clear")
	}
	if open, err := k.Open(stored.GetId(), stored.GetSealed()); err != nil || string(open) != data {
		t.Errorf("Open(stored) = %q, %v", open, err)
	}
}

func TestSecretBadInputChangesNothing(t *testing.T) {
	s, r, _ := newSecretServer(t)
	ctx := t.Context()
	for _, c := range []struct {
		spec  *objectv1.SecretSpec
		field string
	}{
		{secretSpec("big", strings.Repeat("x", 600*1024)), "spec.data"},
		{secretSpec("empty", ""), "spec.data"},
		{secretSpec("bad name!", "x"), "spec.annotations.name"},
		{nil, "spec"},
	} {
		_, err := s.CreateSecret(ctx, &controlv1.CreateSecretRequest{Spec: c.spec})
		if got := fields(t, sdk.FromGRPC(err)); !slices.Contains(got, c.field) {
			t.Errorf("CreateSecret(%.40v) = %v, want an error naming %s", c.spec, err, c.field)
		}
	}
	r.st.View(func(tx *state.ReadTx) {
		if n := len(tx.Secrets()); n != 0 {
			t.Errorf("%d secrets stored after bad requests", n)
		}
	})
	// same_ok: the same data answers with the existing secret; other data
	// is refused, and the stored one stays.
	first, err := s.CreateSecret(ctx, &controlv1.CreateSecretRequest{Spec: secretSpec("pw", "one")})
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.CreateSecret(ctx, &controlv1.CreateSecretRequest{Spec: secretSpec("pw", "one"), SameOk: true})
	if err != nil || !again.GetExisted() || again.GetSecret().GetId() != first.GetSecret().GetId() {
		t.Errorf("CreateSecret(same data, same_ok) = %v, %v", again, err)
	}
	if _, err := s.CreateSecret(ctx, &controlv1.CreateSecretRequest{Spec: secretSpec("pw", "two"), SameOk: true}); !errors.Is(sdk.FromGRPC(err), sdk.ErrFailedPrecondition) {
		t.Errorf("CreateSecret(other data, same_ok) = %v, want FailedPrecondition", err)
	}
	if _, err := s.CreateSecret(ctx, &controlv1.CreateSecretRequest{Spec: secretSpec("pw", "one")}); !errors.Is(sdk.FromGRPC(err), sdk.ErrAlreadyExists) {
		t.Errorf("CreateSecret(same name) = %v, want AlreadyExists", err)
	}
	var n int
	r.st.View(func(tx *state.ReadTx) { n = len(tx.Secrets()) })
	if n != 1 {
		t.Errorf("%d secrets stored, want 1", n)
	}

	// Without a key, nothing is stored either.
	noKey := NewServer(r, r.st, nil, slog.New(slog.DiscardHandler), WithSecrets(&secrets.Holder{}))
	if _, err := noKey.CreateSecret(ctx, &controlv1.CreateSecretRequest{Spec: secretSpec("a", "x")}); !errors.Is(sdk.FromGRPC(err), sdk.ErrUnavailable) {
		t.Errorf("CreateSecret without a key = %v, want Unavailable", err)
	}
}

// TestSecretReferences: a service names secrets and configs by name; they
// resolve to IDs; a missing one is refused naming the field; one in use
// cannot be removed, and the error names the service.
func TestSecretReferences(t *testing.T) {
	s, r, _ := newSecretServer(t)
	ctx := t.Context()
	sec, err := s.CreateSecret(ctx, &controlv1.CreateSecretRequest{Spec: secretSpec("db_password", "pw")})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := s.CreateConfig(ctx, &controlv1.CreateConfigRequest{Spec: &objectv1.ConfigSpec{Annotations: &objectv1.Annotations{Name: "app.conf"}, Data: []byte("a=1\n")}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetConfig(ctx, &controlv1.GetConfigRequest{Ref: "app.conf"}); string(got.GetConfig().GetSpec().GetData()) != "a=1\n" {
		t.Errorf("GetConfig data = %q", got.GetConfig().GetSpec().GetData())
	}

	spec := validServiceSpec()
	spec.Task.Container.Secrets = []*objectv1.FileReference{{Name: "missing"}}
	if _, err := s.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec}); !slices.Contains(fields(t, sdk.FromGRPC(err)), "spec.task.container.secrets[0]") {
		t.Errorf("CreateService with a missing secret = %v", err)
	}
	spec.Task.Container.Secrets = []*objectv1.FileReference{{Name: "db_password", Target: "../etc/passwd"}}
	if _, err := s.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec}); !slices.Contains(fields(t, sdk.FromGRPC(err)), "spec.task.container.secrets[0].target") {
		t.Errorf("CreateService with a bad target = %v", err)
	}
	r.st.View(func(tx *state.ReadTx) {
		if n := len(tx.Services()); n != 0 {
			t.Errorf("%d services stored after refused creates", n)
		}
	})

	spec.Task.Container.Secrets = []*objectv1.FileReference{{Name: "db_password"}}
	spec.Task.Container.Configs = []*objectv1.FileReference{{Name: "app.conf", Target: "/etc/app.conf"}}
	created, err := s.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	c := created.GetService().GetSpec().GetTask().GetContainer()
	if c.GetSecrets()[0].GetId() != sec.GetSecret().GetId() || c.GetConfigs()[0].GetId() != cfg.GetConfig().GetId() {
		t.Errorf("references not resolved: %v %v", c.GetSecrets(), c.GetConfigs())
	}
	_, err = s.RemoveSecret(ctx, &controlv1.RemoveSecretRequest{Ref: "db_password"})
	if !errors.Is(sdk.FromGRPC(err), sdk.ErrFailedPrecondition) || !strings.Contains(err.Error(), spec.GetAnnotations().GetName()) {
		t.Errorf("RemoveSecret in use = %v, want FailedPrecondition naming %s", err, spec.GetAnnotations().GetName())
	}
	_, err = s.RemoveConfig(ctx, &controlv1.RemoveConfigRequest{Ref: "app.conf"})
	if !errors.Is(sdk.FromGRPC(err), sdk.ErrFailedPrecondition) {
		t.Errorf("RemoveConfig in use = %v, want FailedPrecondition", err)
	}
	// Updated to drop it, the service's previous spec still holds it: a
	// rollback would bring it back, and the error says so.
	next := proto.CloneOf(created.GetService().GetSpec())
	next.Task.Container.Secrets = nil
	if _, err := s.UpdateService(ctx, &controlv1.UpdateServiceRequest{Ref: created.GetService().GetId(), Version: created.GetService().GetMeta().GetVersion(), Spec: next}); err != nil {
		t.Fatal(err)
	}
	_, err = s.RemoveSecret(ctx, &controlv1.RemoveSecretRequest{Ref: "db_password"})
	if !errors.Is(sdk.FromGRPC(err), sdk.ErrFailedPrecondition) || !strings.Contains(err.Error(), "previous spec") {
		t.Errorf("RemoveSecret used by a previous spec = %v, want FailedPrecondition naming the previous spec", err)
	}
	if _, err := s.RemoveService(ctx, &controlv1.RemoveServiceRequest{Ref: spec.GetAnnotations().GetName()}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveSecret(ctx, &controlv1.RemoveSecretRequest{Ref: "db_password"}); err != nil {
		t.Errorf("RemoveSecret once unused = %v", err)
	}
}

// TestStoreRefusesClearSecret: the store itself refuses a secret carrying
// clear data, whatever a caller does.
func TestStoreRefusesClearSecret(t *testing.T) {
	_, r, _ := newSecretServer(t)
	err := r.Update(t.Context(), func(tx *state.Tx) error {
		return tx.CreateSecret(&objectv1.Secret{Id: "s1", Spec: secretSpec("x", "clear")})
	})
	if err == nil {
		t.Error("the store took a secret with clear data")
	}
}
