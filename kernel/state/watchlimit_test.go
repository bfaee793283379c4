package state

import (
	"fmt"
	"testing"

	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// TestSetWatchLimit: the limit a test sets applies to a watch already
// open; a command with more events than it closes the watch at once, even
// while its reader keeps up.
func TestSetWatchLimit(t *testing.T) {
	s := New()
	events, cancel := s.Watch()
	defer cancel()
	s.SetWatchLimit(3)
	mustApply(t, s, 1, creates(testTask("t0", "", "", running, pending)))
	if e, ok := <-events; !ok || e.Task.GetId() != "t0" {
		t.Fatalf("event under the limit = %+v, %t, want t0", summarize(e), ok)
	}
	var txns []*raftv1.Transaction
	for i := range 4 {
		txns = append(txns, creates(testTask(fmt.Sprint("u", i), "", "", running, pending)))
	}
	mustApply(t, s, 2, txns...)
	for e := range events {
		t.Fatalf("event %+v after a command over the limit, want the watch closed", summarize(e))
	}
}
