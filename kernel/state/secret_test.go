package state

import (
	"errors"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// testSecret is a secret as the control API stores it: sealed, no clear data.
func testSecret(id, name string) *objectv1.Secret {
	return &objectv1.Secret{
		Id:     id,
		Spec:   &objectv1.SecretSpec{Annotations: &objectv1.Annotations{Name: name}},
		Sealed: &objectv1.SealedData{KeyId: "sk1-00", Nonce: []byte("nonce-" + id), Ciphertext: []byte("sealed-" + id)},
		Digest: "sha256:" + id,
		Size:   6,
	}
}

// clearSecret is a secret as a buggy writer might send it: with its clear
// data still in spec.data.
func clearSecret(id, name string) *objectv1.Secret {
	s := testSecret(id, name)
	s.Spec.Data = []byte("hunter")
	return s
}

func testConfig(id, name string) *objectv1.Config {
	return &objectv1.Config{Id: id, Spec: &objectv1.ConfigSpec{Annotations: &objectv1.Annotations{Name: name}, Data: []byte("data of " + id)}}
}

func TestSecretConfigTables(t *testing.T) {
	s := New()
	mustApply(t, s, 1, creates(
		testSecret("sec1", "tls-key"), testSecret("sec2", "db-password"),
		testConfig("cfg1", "nginx.conf"), testConfig("cfg2", "app.yaml"),
	))
	s.View(func(tx *ReadTx) {
		if got := ids(tx.Secrets()); !slices.Equal(got, []string{"sec2", "sec1"}) {
			t.Errorf("Secrets() = %v, want [sec2 sec1] (by name: db-password, tls-key)", got)
		}
		if got := ids(tx.Configs()); !slices.Equal(got, []string{"cfg2", "cfg1"}) {
			t.Errorf("Configs() = %v, want [cfg2 cfg1] (by name: app.yaml, nginx.conf)", got)
		}
		if got := tx.SecretByName("tls-key").GetId(); got != "sec1" {
			t.Errorf("SecretByName(tls-key) = %q, want sec1", got)
		}
		if got := tx.ConfigByName("app.yaml").GetId(); got != "cfg2" {
			t.Errorf("ConfigByName(app.yaml) = %q, want cfg2", got)
		}
		if tx.SecretByName("nginx.conf") != nil || tx.ConfigByName("tls-key") != nil {
			t.Error("a name resolved across kinds")
		}
		if got := tx.Secret("sec2"); got.GetMeta().GetVersion() != 1 || string(got.GetSealed().GetCiphertext()) != "sealed-sec2" {
			t.Errorf("Secret(sec2) = %v, want version 1 with its sealed data", got)
		}
		if got := tx.Config("cfg1"); got.GetMeta().GetVersion() != 1 || string(got.GetSpec().GetData()) != "data of cfg1" {
			t.Errorf("Config(cfg1) = %v, want version 1 with its data", got)
		}

		for ref, want := range map[string]string{"sec1": "sec1", "db-password": "sec2", "sec": "", "nope": "", "": ""} {
			if v, err := tx.LookupSecret(ref); v.GetId() != want {
				t.Errorf("LookupSecret(%q) = %q, %v; want %q", ref, v.GetId(), err, want)
			}
		}
		for ref, want := range map[string]string{"cfg2": "cfg2", "nginx.conf": "cfg1", "cfg": "", "nope": "", "": ""} {
			if v, err := tx.LookupConfig(ref); v.GetId() != want {
				t.Errorf("LookupConfig(%q) = %q, %v; want %q", ref, v.GetId(), err, want)
			}
		}
		for _, c := range []struct {
			what string
			err  error
			want error
		}{
			{"LookupSecret(ambiguous prefix)", second(tx.LookupSecret("sec")), sdk.ErrFailedPrecondition},
			{"LookupSecret(unknown)", second(tx.LookupSecret("nope")), sdk.ErrNotFound},
			{"LookupSecret(empty)", second(tx.LookupSecret("")), sdk.ErrInvalidArgument},
			{"LookupConfig(ambiguous prefix)", second(tx.LookupConfig("cfg")), sdk.ErrFailedPrecondition},
			{"LookupConfig(unknown)", second(tx.LookupConfig("nope")), sdk.ErrNotFound},
			{"LookupConfig(empty)", second(tx.LookupConfig("")), sdk.ErrInvalidArgument},
		} {
			if !errors.Is(c.err, c.want) {
				t.Errorf("%s error = %v, want %v", c.what, c.err, c.want)
			}
		}
	})

	// A duplicate name is refused by Prepare and by Apply, for both kinds.
	for _, c := range []struct {
		what string
		fn   func(tx *Tx) error
		obj  proto.Message
	}{
		{"secret", func(tx *Tx) error { return tx.CreateSecret(testSecret("sec3", "tls-key")) }, testSecret("sec3", "tls-key")},
		{"config", func(tx *Tx) error { return tx.CreateConfig(testConfig("cfg3", "nginx.conf")) }, testConfig("cfg3", "nginx.conf")},
	} {
		if _, err := s.Prepare(now, c.fn); !errors.Is(err, sdk.ErrAlreadyExists) {
			t.Errorf("Prepare(create a second %s with a taken name) = %v, want AlreadyExists", c.what, err)
		}
		if errs := s.Apply(lastIndex(s)+1, command(creates(c.obj))); !errors.Is(errs[0], sdk.ErrAlreadyExists) {
			t.Errorf("Apply(create a second %s with a taken name) = %v, want AlreadyExists", c.what, errs[0])
		}
	}
	// Objects without a name are refused.
	for _, obj := range []proto.Message{testSecret("sec4", ""), testConfig("cfg4", "")} {
		if errs := s.Apply(lastIndex(s)+1, command(creates(obj))); !errors.Is(errs[0], sdk.ErrInvalidArgument) {
			t.Errorf("Apply(create %v without a name) = %v, want InvalidArgument", obj, errs[0])
		}
	}
	// A secret, a config and a network may share a name.
	mustApply(t, s, lastIndex(s)+1, creates(testConfig("cfg5", "tls-key"), testNetwork("net1", "tls-key")))
	s.View(func(tx *ReadTx) {
		if tx.Secret("sec3") != nil || tx.Config("cfg3") != nil || tx.Secret("sec4") != nil || tx.Config("cfg4") != nil {
			t.Error("a refused create was stored")
		}
	})
	checkIndexes(t, s)
}

// second returns its second argument: the error of a two-result call.
func second[T any](_ T, err error) error { return err }

// lastIndex returns the store's last applied index.
func lastIndex(s *Store) (i uint64) {
	s.View(func(tx *ReadTx) { i = tx.Index() })
	return i
}

func TestSecretClearDataRefused(t *testing.T) {
	s := New()
	mustApply(t, s, 1, creates(testSecret("sec1", "db-password")))

	_, err := s.Prepare(now, func(tx *Tx) error { return tx.CreateSecret(clearSecret("sec2", "api-key")) })
	if !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("Prepare(create a secret with clear data) = %v, want InvalidArgument", err)
	}
	_, err = s.Prepare(now, func(tx *Tx) error {
		sec := clone(tx.Secret("sec1"))
		sec.Spec.Data = []byte("hunter2")
		return tx.UpdateSecret(sec)
	})
	if !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("Prepare(update a secret with clear data) = %v, want InvalidArgument", err)
	}

	// Apply is the authority: a command that skipped Prepare is refused too,
	// whole, and nothing of it is stored.
	errs := s.Apply(2, command(
		creates(testConfig("cfg1", "app.yaml"), clearSecret("sec2", "api-key")),
		txn(act(opUpdate, withVersion(clearSecret("sec1", "db-password"), 1))),
	))
	for i, err := range errs {
		if !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("Apply transaction %d (clear secret data) = %v, want InvalidArgument", i, err)
		}
	}
	s.View(func(tx *ReadTx) {
		if tx.Secret("sec2") != nil || tx.Config("cfg1") != nil {
			t.Error("a transaction holding clear secret data was stored")
		}
		if got := tx.Secret("sec1"); len(got.GetSpec().GetData()) != 0 || got.GetMeta().GetVersion() != 1 {
			t.Errorf("Secret(sec1) = %v, want unchanged at version 1 without data", got)
		}
	})

	// Nor does a snapshot bring clear data in.
	snap := s.Snapshot()
	snap.Secrets = append(snap.Secrets, clearSecret("sec9", "api-key"))
	if err := New().Restore(snap); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("Restore(a secret with clear data) = %v, want InvalidArgument", err)
	}
	checkIndexes(t, s)
}

// TestSecretConfigTx writes secrets and configs through Prepare and Apply
// and reads them back: in the Tx, as events, from a view, and refused when
// stale.
func TestSecretConfigTx(t *testing.T) {
	s := New()
	mustApply(t, s, 1, creates(testSecret("sec1", "tls-key"), testConfig("cfg1", "nginx.conf")))
	events, cancel := s.Watch()
	defer cancel()

	// Create, update and delete through Prepare; the Tx reads its own
	// writes, names included.
	prepared, err := s.Prepare(now, func(tx *Tx) error { return changeSecretsAndConfigs(t, tx) })
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range prepared.GetActions() {
		got = append(got, verb(a.GetKind())+" "+FirstObjectID(&raftv1.Transaction{Actions: []*raftv1.StoreAction{a}}))
	}
	if want := []string{"create sec2", "update cfg1", "create cfg2", "delete sec1"}; !slices.Equal(got, want) {
		t.Errorf("Prepare actions = %v, want %v", got, want)
	}
	prepared.RequestId = "r1"
	mustApply(t, s, 2, prepared)

	checkSecretConfigEvents(t, events)

	s.View(func(tx *ReadTx) {
		if rec, ok := tx.Request("r1"); !ok || rec != (Request{Index: 2, ObjectID: "sec2"}) {
			t.Errorf("Request(r1) = %+v, %v; want index 2, object sec2", rec, ok)
		}
		if tx.Secret("sec1") != nil || tx.SecretByName("tls-key") != nil {
			t.Error("sec1 still readable after its delete")
		}
		cfg := tx.Config("cfg1")
		if cfg.GetMeta().GetVersion() != 2 || string(cfg.GetSpec().GetData()) != "server {}" {
			t.Errorf("Config(cfg1) = %v, want version 2 with its new data", cfg)
		}
	})

	checkStaleSecretConfigWrites(t, s)
	checkIndexes(t, s)
}

// changeSecretsAndConfigs creates, updates and deletes secrets and configs
// in tx (sec1 and cfg1 "nginx.conf" exist), checking on the way that the Tx
// reads its own writes, names included. Its actions are, in order: create
// sec2, update cfg1 (renamed "site.conf"), create cfg2 (taking the freed
// name "nginx.conf"), delete sec1.
func changeSecretsAndConfigs(t *testing.T, tx *Tx) error {
	if err := tx.CreateSecret(testSecret("sec2", "db-password")); err != nil {
		return err
	}
	if got := tx.SecretByName("db-password").GetId(); got != "sec2" {
		t.Errorf("in the Tx, SecretByName(db-password) = %q, want sec2", got)
	}
	cfg := clone(tx.Config("cfg1"))
	cfg.Spec.Annotations.Name = "site.conf"
	cfg.Spec.Data = []byte("server {}")
	if err := tx.UpdateConfig(cfg); err != nil {
		return err
	}
	if tx.ConfigByName("nginx.conf") != nil || tx.ConfigByName("site.conf").GetId() != "cfg1" {
		t.Error("in the Tx, the config's old name still resolves, or its new one does not")
	}
	// The freed name may be taken in the same Tx.
	if err := tx.CreateConfig(testConfig("cfg2", "nginx.conf")); err != nil {
		return err
	}
	if err := tx.DeleteSecret("sec1"); err != nil {
		return err
	}
	if got := ids(tx.Secrets()); !slices.Equal(got, []string{"sec2"}) {
		t.Errorf("in the Tx, Secrets() = %v, want [sec2]", got)
	}
	if got := ids(tx.Configs()); !slices.Equal(got, []string{"cfg2", "cfg1"}) {
		t.Errorf("in the Tx, Configs() = %v, want [cfg2 cfg1]", got)
	}
	if _, err := tx.LookupSecret("sec1"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("in the Tx, LookupSecret(deleted sec1) = %v, want NotFound", err)
	}
	return nil
}

// checkSecretConfigEvents reads the four events of the actions of
// changeSecretsAndConfigs from events and checks them, in order.
func checkSecretConfigEvents(t *testing.T, events <-chan Event) {
	t.Helper()
	type seen struct {
		kind    raftv1.ActionKind
		id, old string
	}
	var evs []seen
	for range 4 {
		e := <-events
		switch {
		case e.Secret != nil:
			evs = append(evs, seen{e.Kind, e.Secret.GetId(), e.OldSecret.GetSpec().GetAnnotations().GetName()})
		case e.Config != nil:
			evs = append(evs, seen{e.Kind, e.Config.GetId(), e.OldConfig.GetSpec().GetAnnotations().GetName()})
		default:
			t.Fatalf("event %+v has neither a secret nor a config", e)
		}
	}
	want := []seen{{opCreate, "sec2", ""}, {opUpdate, "cfg1", "nginx.conf"}, {opCreate, "cfg2", ""}, {opDelete, "sec1", ""}}
	if !slices.Equal(evs, want) {
		t.Errorf("events = %v, want %v", evs, want)
	}
}

// checkStaleSecretConfigWrites checks that an update from a stale read is
// refused, by Prepare and by Apply (at indexes 3 and 4), and so is a delete
// of a config s does not hold.
func checkStaleSecretConfigWrites(t *testing.T, s *Store) {
	t.Helper()
	stale := withVersion(testSecret("sec2", "db-password"), 1)
	if _, err := s.Prepare(now, func(tx *Tx) error { return tx.UpdateSecret(clone(stale)) }); !errors.Is(err, ErrVersionConflict) {
		t.Errorf("Prepare(stale secret update) = %v, want ErrVersionConflict", err)
	}
	if errs := s.Apply(3, command(txn(act(opUpdate, stale)))); !errors.Is(errs[0], ErrVersionConflict) {
		t.Errorf("Apply(stale secret update) = %v, want ErrVersionConflict", errs[0])
	}
	if errs := s.Apply(4, command(txn(act(opDelete, withVersion(&objectv1.Config{Id: "cfg2"}, 1))))); !errors.Is(errs[0], ErrVersionConflict) {
		t.Errorf("Apply(stale config delete) = %v, want ErrVersionConflict", errs[0])
	}
	if _, err := s.Prepare(now, func(tx *Tx) error { return tx.DeleteConfig("cfg404") }); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Prepare(delete a missing config) = %v, want NotFound", err)
	}
}

func TestSecretConfigRenameSwapAndUndo(t *testing.T) {
	s := New()
	mustApply(t, s, 1, creates(testSecret("a", "x"), testSecret("b", "y"), testConfig("c", "x"), testConfig("d", "y")))
	// Swapping two names in one transaction is fine.
	mustApply(t, s, 2,
		txn(act(opUpdate, withVersion(testSecret("a", "y"), 1)), act(opUpdate, withVersion(testSecret("b", "x"), 1))),
		txn(act(opUpdate, withVersion(testConfig("c", "y"), 1)), act(opUpdate, withVersion(testConfig("d", "x"), 1))),
	)
	// A transaction that leaves two objects of a kind with one name fails
	// whole: its first action (a create) is undone.
	errs := s.Apply(3, command(
		txn(act(opCreate, testSecret("e", "z")), act(opUpdate, withVersion(testSecret("a", "x"), 2))),
		txn(act(opCreate, testConfig("f", "z")), act(opUpdate, withVersion(testConfig("c", "x"), 2))),
	))
	for i, err := range errs {
		if !errors.Is(err, sdk.ErrAlreadyExists) {
			t.Errorf("Apply transaction %d (rename onto a used name) = %v, want AlreadyExists", i, err)
		}
	}
	s.View(func(tx *ReadTx) {
		if tx.Secret("e") != nil || tx.Config("f") != nil {
			t.Error("an object created by a failed transaction")
		}
		if got := tx.SecretByName("y").GetId(); got != "a" {
			t.Errorf("SecretByName(y) = %q, want a", got)
		}
		if got := tx.ConfigByName("y").GetId(); got != "c" {
			t.Errorf("ConfigByName(y) = %q, want c", got)
		}
	})
	checkIndexes(t, s)
}

func TestSecretConfigSnapshot(t *testing.T) {
	s := seeded(t)
	mustApply(t, s, 2, creates(
		testSecret("sec1", "tls-key"), testSecret("sec0", "db-password"),
		testConfig("cfg1", "nginx.conf"), testConfig("cfg0", "app.yaml"),
		testNetwork("net1", "front"),
	))
	snap := s.Snapshot()
	if got := ids(snap.GetSecrets()); !slices.Equal(got, []string{"sec0", "sec1"}) {
		t.Errorf("Snapshot secrets = %v, want [sec0 sec1]", got)
	}
	if got := ids(snap.GetConfigs()); !slices.Equal(got, []string{"cfg0", "cfg1"}) {
		t.Errorf("Snapshot configs = %v, want [cfg0 cfg1]", got)
	}
	// Through the wire format, as raftstore writes and reads it.
	data, err := proto.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	decoded := &raftv1.Snapshot{}
	if err := proto.Unmarshal(data, decoded); err != nil {
		t.Fatal(err)
	}
	r := New()
	if err := r.Restore(decoded); err != nil {
		t.Fatal(err)
	}
	if got := r.Snapshot(); !proto.Equal(got, snap) {
		t.Errorf("Snapshot after Restore = %v, want %v", got, snap)
	}
	r.View(func(tx *ReadTx) {
		if tx.SecretByName("tls-key").GetId() != "sec1" || tx.ConfigByName("app.yaml").GetId() != "cfg0" {
			t.Error("restored secrets or configs not found by name")
		}
	})
	checkIndexes(t, r)

	for _, c := range []struct {
		what    string
		corrupt func(*raftv1.Snapshot)
	}{
		{"two secrets named tls-key", func(b *raftv1.Snapshot) { b.Secrets[0].Spec.Annotations.Name = "tls-key" }},
		{"two configs named app.yaml", func(b *raftv1.Snapshot) { b.Configs[1].Spec.Annotations.Name = "app.yaml" }},
		{"a secret without a name", func(b *raftv1.Snapshot) { b.Secrets[0].Spec = nil }},
		{"a duplicate config id", func(b *raftv1.Snapshot) { b.Configs[1].Id = "cfg0" }},
		{"a nil secret", func(b *raftv1.Snapshot) { b.Secrets = append(b.Secrets, nil) }},
	} {
		bad := proto.Clone(snap).(*raftv1.Snapshot)
		c.corrupt(bad)
		if err := New().Restore(bad); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("Restore(%s) = %v, want InvalidArgument", c.what, err)
		}
	}
}
