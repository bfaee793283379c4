package gossip

import (
	"slices"
	"testing"
)

// TestQueueKeepsSameLengthMessages is the case memberlist's queue gets
// wrong: the queue empties while a message replaces another of its name,
// then two messages of the same length are queued; both must be sent.
func TestQueueKeepsSameLengthMessages(t *testing.T) {
	q := &queue{numNodes: func() int { return 50 }, mult: 4}
	q.put("n/t1", []byte("t1-old"))
	q.get(0, 1400)
	q.put("n/t1", []byte("t1-new"))
	q.put("n/t2", []byte("t2-new"))
	got := q.get(0, 1400)
	if !slices.ContainsFunc(got, func(b []byte) bool { return string(b) == "t1-new" }) || len(got) != 2 {
		t.Errorf("get = %q, want t1-new and t2-new", got)
	}
}

func TestQueueLimits(t *testing.T) {
	q := &queue{numNodes: func() int { return 9 }, mult: 3} // 3 transmits
	q.put("a", []byte("aaaa"))
	q.put("b", []byte("bbbbbbbb"))
	if got := q.get(2, 10); len(got) != 1 || string(got[0]) != "bbbbbbbb" {
		t.Errorf("get(limit 10) = %q, want the newest that fits", got)
	}
	sent := map[string]int{"b": 1}
	for range 10 {
		for _, m := range q.get(2, 100) {
			sent[string(m[:1])]++
		}
	}
	if sent["a"] != 3 || sent["b"] != 3 {
		t.Errorf("transmits = %v, want 3 each", sent)
	}
	if got := q.get(0, 100); got != nil {
		t.Errorf("get after the limit = %q, want nothing", got)
	}
}
