package state

import (
	"errors"
	"testing"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func lookupStore(t *testing.T) *Store {
	t.Helper()
	named := func(id, name, host string) *objectv1.Node {
		n := testNode(id, worker, active)
		n.Spec.Annotations = &objectv1.Annotations{Name: name}
		n.Description.Hostname = host
		return n
	}
	s := New()
	mustApply(t, s, 1, creates(
		named("abc111", "alpha", "box1"),
		named("abc222", "", "box2"),
		named("abd333", "box1", "box3"), // its name is another node's hostname
		named("xyz444", "twin", "twin-a"),
		named("xyz555", "twin", "twin-b"),
		named("box2", "", "elsewhere"), // its ID is another node's hostname
		testService("svc111", "web"),
		testService("svc222", "svc1"), // its name is a prefix of another's ID
		testTask("tsk111", "svc111", "", running, pending),
		testTask("tsk112", "svc111", "", running, pending),
		testTask("tsk11", "svc111", "", running, pending),
	))
	return s
}

func TestLookup(t *testing.T) {
	tests := []struct {
		kind string // node, service or task
		ref  string
		want string // the ID found; "" when an error is expected
		err  error
	}{
		{"node", "abc111", "abc111", nil},
		{"node", "alpha", "abc111", nil},
		{"node", "box3", "abd333", nil},                // hostname
		{"node", "box1", "abd333", nil},                // spec name beats another node's hostname
		{"node", "box2", "box2", nil},                  // ID beats another node's hostname
		{"node", "abd", "abd333", nil},                 // unique prefix
		{"node", "abc", "", sdk.ErrFailedPrecondition}, // ambiguous prefix
		{"node", "ab", "", sdk.ErrFailedPrecondition},
		{"node", "twin", "", sdk.ErrFailedPrecondition}, // ambiguous name
		{"node", "twin-b", "xyz555", nil},
		{"node", "nope", "", sdk.ErrNotFound},
		{"node", "", "", sdk.ErrInvalidArgument},
		{"service", "svc111", "svc111", nil},
		{"service", "web", "svc111", nil},
		{"service", "svc1", "svc222", nil}, // a name beats an ID prefix
		{"service", "svc2", "svc222", nil},
		{"service", "svc", "", sdk.ErrFailedPrecondition},
		{"service", "db", "", sdk.ErrNotFound},
		{"service", "", "", sdk.ErrInvalidArgument},
		{"task", "tsk11", "tsk11", nil}, // an exact ID, though a prefix of two others
		{"task", "tsk111", "tsk111", nil},
		{"task", "tsk112", "tsk112", nil},
		{"task", "tsk1", "", sdk.ErrFailedPrecondition},
		{"task", "tsk", "", sdk.ErrFailedPrecondition},
		{"task", "x", "", sdk.ErrNotFound},
		{"task", "", "", sdk.ErrInvalidArgument},
	}
	s := lookupStore(t)
	s.View(func(tx *ReadTx) {
		for _, tc := range tests {
			var got interface{ GetId() string }
			var err error
			switch tc.kind {
			case "node":
				got, err = tx.LookupNode(tc.ref)
			case "service":
				got, err = tx.LookupService(tc.ref)
			case "task":
				got, err = tx.LookupTask(tc.ref)
			}
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Errorf("Lookup %s(%q) error = %v, want kind %v", tc.kind, tc.ref, err, tc.err)
				}
				continue
			}
			if err != nil || got.GetId() != tc.want {
				t.Errorf("Lookup %s(%q) = %v, %v, want %s", tc.kind, tc.ref, got, err, tc.want)
			}
		}
	})
}

func TestLookupAmbiguousNamesCandidates(t *testing.T) {
	s := lookupStore(t)
	s.View(func(tx *ReadTx) {
		_, err := tx.LookupNode("abc")
		want := `node "abc": ambiguous ID prefix, matches abc111, abc222: failed precondition`
		if err == nil || err.Error() != want {
			t.Errorf("LookupNode(abc) error = %v, want %s", err, want)
		}
	})
}
