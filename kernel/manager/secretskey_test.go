package manager

import (
	"errors"
	"testing"
	"time"

	"github.com/shoalhq/shoal/kernel/secrets"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// TestLeaderSecretsKey: a leader without a key makes one only while no
// secret is sealed, and keeps the one it holds.
func TestLeaderSecretsKey(t *testing.T) {
	st := state.New()
	var saved [][]byte
	save := func(k []byte) error { saved = append(saved, k); return nil }

	h := &secrets.Holder{}
	k, err := leaderSecretsKey(h, st, save)
	if err != nil || k == nil || len(saved) != 1 || h.Get() != k {
		t.Fatalf("no key, no secret: %v, %v, saved %d", k, err, len(saved))
	}
	again, err := leaderSecretsKey(h, st, save)
	if err != nil || again != k || len(saved) != 1 {
		t.Errorf("key held: %v, %v, saved %d; want the same key, nothing saved", again, err, len(saved))
	}

	sealed, err := k.Seal("s1", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	txn, err := st.Prepare(time.Now(), func(tx *state.Tx) error {
		return tx.CreateSecret(&objectv1.Secret{Id: "s1", Spec: &objectv1.SecretSpec{Annotations: &objectv1.Annotations{Name: "a"}}, Sealed: sealed})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(1, &raftv1.Command{Transactions: []*raftv1.Transaction{txn}})[0]; err != nil {
		t.Fatal(err)
	}
	other := &secrets.Holder{}
	if _, err := leaderSecretsKey(other, st, save); !errors.Is(err, sdk.ErrFailedPrecondition) || other.Get() != nil || len(saved) != 1 {
		t.Errorf("no key, a sealed secret: %v, saved %d; want FailedPrecondition and no new key", err, len(saved))
	}
}
