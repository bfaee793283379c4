package state

import (
	"errors"
	"fmt"
	"testing"

	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

func createWithRequest(id, reqID string) *raftv1.Transaction {
	return &raftv1.Transaction{RequestId: reqID, Actions: []*raftv1.StoreAction{{
		Kind:   raftv1.ActionKind_ACTION_KIND_CREATE,
		Target: &raftv1.StoreAction_Service{Service: testService(id, "svc-"+id)},
	}}}
}

func TestRequestAppliesOnce(t *testing.T) {
	s := New()
	errs := s.Apply(1, &raftv1.Command{Transactions: []*raftv1.Transaction{
		createWithRequest("a", "r1"),
		createWithRequest("b", "r1"), // the same request, packed in the same entry
	}})
	if errs[0] != nil || !errors.Is(errs[1], ErrDuplicateRequest) {
		t.Fatalf("Apply = %v, want [nil, ErrDuplicateRequest]", errs)
	}
	if err := s.Apply(2, &raftv1.Command{Transactions: []*raftv1.Transaction{createWithRequest("c", "r1")}})[0]; !errors.Is(err, ErrDuplicateRequest) {
		t.Fatalf("Apply of a later retry = %v, want ErrDuplicateRequest", err)
	}
	s.View(func(tx *ReadTx) {
		if tx.Service("b") != nil || tx.Service("c") != nil {
			t.Error("a duplicate request applied")
		}
		rec, ok := tx.Request("r1")
		if !ok || rec != (Request{Index: 1, ObjectID: "a"}) {
			t.Errorf("Request(r1) = %+v, %v; want index 1, object a", rec, ok)
		}
	})
	// A transaction that fails records nothing: its retry may apply.
	s.Apply(3, &raftv1.Command{Transactions: []*raftv1.Transaction{createWithRequest("a", "r2")}})
	s.View(func(tx *ReadTx) {
		if _, ok := tx.Request("r2"); ok {
			t.Error("a failed transaction's request was recorded")
		}
	})
}

func TestRequestsSurviveSnapshotAndAreBounded(t *testing.T) {
	s := New()
	n := MaxRequests + 10
	for i := range n {
		id := fmt.Sprintf("s%d", i)
		if err := s.Apply(uint64(i+1), &raftv1.Command{Transactions: []*raftv1.Transaction{createWithRequest(id, "r"+id)}})[0]; err != nil {
			t.Fatal(err)
		}
	}
	r := New()
	if err := r.Restore(s.Snapshot()); err != nil {
		t.Fatal(err)
	}
	for _, st := range []*Store{s, r} {
		st.View(func(tx *ReadTx) {
			if _, ok := tx.Request("rs0"); ok {
				t.Error("the oldest request is still remembered past MaxRequests")
			}
			if rec, ok := tx.Request(fmt.Sprintf("rs%d", n-1)); !ok || rec.ObjectID != fmt.Sprintf("s%d", n-1) {
				t.Errorf("newest request = %+v, %v", rec, ok)
			}
			if got := len(tx.t.requests.byID); got != MaxRequests {
				t.Errorf("%d requests remembered, want %d", got, MaxRequests)
			}
		})
	}
	// The restored store evicts in the same order as the original.
	for _, st := range []*Store{s, r} {
		st.Apply(uint64(n+1), &raftv1.Command{Transactions: []*raftv1.Transaction{createWithRequest("x", "rx")}})
	}
	if a, b := s.Snapshot().GetRequests(), r.Snapshot().GetRequests(); len(a) != len(b) || a[0].GetId() != b[0].GetId() {
		t.Errorf("after one more request the stores remember different requests: first %s and %s", a[0].GetId(), b[0].GetId())
	}
}
