package presence

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// at is t0 plus s seconds.
func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

// op is one change to a Heap: Set(id, at(sec)), or Remove(id).
type op struct {
	id     string
	sec    int
	remove bool
}

func apply(h *Heap, ops []op) {
	for _, o := range ops {
		if o.remove {
			h.Remove(o.id)
		} else {
			h.Set(o.id, at(o.sec))
		}
	}
}

// TestHeapOrder checks that nodes come out in deadline order after
// inserts, moves and removals.
func TestHeapOrder(t *testing.T) {
	tests := []struct {
		name string
		ops  []op
		want []string // Expired(far future)
	}{
		{"empty", nil, nil},
		{"one", []op{{id: "a", sec: 5}}, []string{"a"}},
		{"ascending", []op{{id: "a", sec: 1}, {id: "b", sec: 2}, {id: "c", sec: 3}}, []string{"a", "b", "c"}},
		{"descending", []op{{id: "c", sec: 3}, {id: "b", sec: 2}, {id: "a", sec: 1}}, []string{"a", "b", "c"}},
		{"mixed", []op{{id: "d", sec: 40}, {id: "a", sec: 10}, {id: "e", sec: 50}, {id: "c", sec: 30}, {id: "b", sec: 20}},
			[]string{"a", "b", "c", "d", "e"}},
		{"move later", []op{{id: "a", sec: 1}, {id: "b", sec: 2}, {id: "c", sec: 3}, {id: "a", sec: 10}},
			[]string{"b", "c", "a"}},
		{"move earlier", []op{{id: "a", sec: 1}, {id: "b", sec: 2}, {id: "c", sec: 3}, {id: "c", sec: 0}},
			[]string{"c", "a", "b"}},
		{"move to same place", []op{{id: "a", sec: 1}, {id: "b", sec: 2}, {id: "b", sec: 2}},
			[]string{"a", "b"}},
		{"move every node", []op{{id: "a", sec: 1}, {id: "b", sec: 2}, {id: "c", sec: 3},
			{id: "a", sec: 6}, {id: "b", sec: 5}, {id: "c", sec: 4}}, []string{"c", "b", "a"}},
		{"remove root", []op{{id: "a", sec: 1}, {id: "b", sec: 2}, {id: "c", sec: 3}, {id: "a", remove: true}},
			[]string{"b", "c"}},
		{"remove last", []op{{id: "a", sec: 1}, {id: "b", sec: 2}, {id: "c", sec: 3}, {id: "c", remove: true}},
			[]string{"a", "b"}},
		{"remove middle", []op{{id: "e", sec: 5}, {id: "d", sec: 4}, {id: "c", sec: 3}, {id: "b", sec: 2},
			{id: "a", sec: 1}, {id: "c", remove: true}}, []string{"a", "b", "d", "e"}},
		{"remove absent", []op{{id: "a", sec: 1}, {id: "x", remove: true}}, []string{"a"}},
		{"remove all", []op{{id: "a", sec: 1}, {id: "b", sec: 2}, {id: "b", remove: true}, {id: "a", remove: true}}, nil},
		{"remove then set again", []op{{id: "a", sec: 1}, {id: "b", sec: 2}, {id: "a", remove: true}, {id: "a", sec: 3}},
			[]string{"b", "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHeap()
			apply(h, tt.ops)
			if got := h.Len(); got != len(tt.want) {
				t.Errorf("Len() = %d, want %d", got, len(tt.want))
			}
			if got := h.Expired(at(1 << 20)); !slices.Equal(got, tt.want) {
				t.Errorf("Expired(far future) = %q, want %q", got, tt.want)
			}
			if got := h.Len(); got != 0 {
				t.Errorf("Len() after expiring all = %d, want 0", got)
			}
		})
	}
}

// TestHeapExpiredBatches checks that Expired pops exactly the deadlines
// not after now, a deadline equal to now included, and leaves the rest.
func TestHeapExpiredBatches(t *testing.T) {
	h := NewHeap()
	apply(h, []op{{id: "a", sec: 10}, {id: "b", sec: 10}, {id: "c", sec: 20}, {id: "d", sec: 30}, {id: "e", sec: 31}})
	steps := []struct {
		now  int
		want []string
		next int // -1: empty
	}{
		{now: 0, want: nil, next: 10},
		{now: 9, want: nil, next: 10},
		{now: 10, want: []string{"a", "b"}, next: 20},
		{now: 10, want: nil, next: 20},
		{now: 25, want: []string{"c"}, next: 30},
		{now: 40, want: []string{"d", "e"}, next: -1},
		{now: 50, want: nil, next: -1},
	}
	for _, s := range steps {
		got := h.Expired(at(s.now))
		slices.Sort(got) // a and b tie: their order is unspecified
		if !slices.Equal(got, s.want) {
			t.Errorf("Expired(t0+%ds) = %q, want %q", s.now, got, s.want)
		}
		next, ok := h.Next()
		switch {
		case s.next < 0 && ok:
			t.Errorf("after Expired(t0+%ds): Next() = %v, true, want false", s.now, next)
		case s.next >= 0 && (!ok || !next.Equal(at(s.next))):
			t.Errorf("after Expired(t0+%ds): Next() = %v, %v, want %v, true", s.now, next, ok, at(s.next))
		}
	}
}

func TestHeapDeadline(t *testing.T) {
	h := NewHeap()
	apply(h, []op{{id: "a", sec: 1}, {id: "b", sec: 2}, {id: "a", sec: 7}, {id: "b", remove: true}})
	tests := []struct {
		id     string
		want   time.Time
		wantOK bool
	}{
		{"a", at(7), true},
		{"b", time.Time{}, false},
		{"never", time.Time{}, false},
	}
	for _, tt := range tests {
		got, ok := h.Deadline(tt.id)
		if !got.Equal(tt.want) || ok != tt.wantOK {
			t.Errorf("Deadline(%q) = %v, %v, want %v, %v", tt.id, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestHeapPostpone(t *testing.T) {
	h := NewHeap()
	apply(h, []op{{id: "a", sec: 1}, {id: "b", sec: 5}, {id: "c", sec: 9}, {id: "d", sec: 12}})
	h.Postpone(at(8))
	want := map[string]time.Time{"a": at(8), "b": at(8), "c": at(9), "d": at(12)}
	for id, w := range want {
		if got, _ := h.Deadline(id); !got.Equal(w) {
			t.Errorf("after Postpone(t0+8s): Deadline(%q) = %v, want %v", id, got, w)
		}
	}
	if got := h.Expired(at(7)); got != nil {
		t.Errorf("after Postpone(t0+8s): Expired(t0+7s) = %q, want none", got)
	}
	got := h.Expired(at(100))
	slices.Sort(got[:2]) // a and b tie at t0+8s
	if w := []string{"a", "b", "c", "d"}; !slices.Equal(got, w) {
		t.Errorf("after Postpone(t0+8s): Expired(t0+100s) = %q, want %q", got, w)
	}
}

// TestHeapRandom runs random Set/Remove/Expired sequences against a plain
// map and checks every result and the heap invariants.
func TestHeapRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		h := NewHeap()
		model := map[string]time.Time{}
		for range 400 {
			id := fmt.Sprintf("n%d", rng.IntN(60))
			switch k := rng.IntN(10); {
			case k < 6:
				d := at(rng.IntN(1000))
				h.Set(id, d)
				model[id] = d
			case k < 8:
				h.Remove(id)
				delete(model, id)
			default:
				now := at(rng.IntN(1000))
				got := h.Expired(now)
				for i := 1; i < len(got); i++ {
					if model[got[i]].Before(model[got[i-1]]) {
						t.Fatalf("round %d: Expired(%v) = %q, not in deadline order", round, now, got)
					}
				}
				var want []string
				for id, d := range model {
					if !d.After(now) {
						want = append(want, id)
						delete(model, id)
					}
				}
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Fatalf("round %d: Expired(%v) = %q, want %q", round, now, got, want)
				}
			}
			checkInvariants(t, h, model)
		}
	}
}

func checkInvariants(t *testing.T, h *Heap, model map[string]time.Time) {
	t.Helper()
	if h.Len() != len(model) || len(h.index) != len(model) {
		t.Fatalf("Len() = %d (index %d), want %d", h.Len(), len(h.index), len(model))
	}
	for i, it := range h.items {
		if it.pos != i {
			t.Fatalf("items[%d].pos = %d, want %d", i, it.pos, i)
		}
		if h.index[it.nodeID] != it {
			t.Fatalf("index[%q] does not point at items[%d]", it.nodeID, i)
		}
		if !it.deadline.Equal(model[it.nodeID]) {
			t.Fatalf("deadline of %q = %v, want %v", it.nodeID, it.deadline, model[it.nodeID])
		}
		if i > 0 && h.less(i, (i-1)/2) {
			t.Fatalf("items[%d] (%v) is before its parent (%v)", i, it.deadline, h.items[(i-1)/2].deadline)
		}
	}
}
