package agent

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

func TestPickWeighted(t *testing.T) {
	list := []manager{{Addr: "a", Weight: 1}, {Addr: "b", Weight: 0}, {Addr: "c", Weight: 3}}
	tests := []struct {
		name  string
		list  []manager
		avoid string
		want  map[string]bool // the addresses that may come out
	}{
		{name: "weight 0 never", list: list, want: map[string]bool{"a": true, "c": true}},
		{name: "avoid the failed one", list: list, avoid: "c", want: map[string]bool{"a": true}},
		{name: "avoid an unknown one", list: list, avoid: "z", want: map[string]bool{"a": true, "c": true}},
		{name: "the failed one when alone", list: []manager{{Addr: "a", Weight: 5}, {Addr: "b"}}, avoid: "a", want: map[string]bool{"a": true}},
		{name: "nothing of positive weight", list: []manager{{Addr: "a"}}, want: map[string]bool{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			seen := map[string]bool{}
			for range 1000 {
				got, ok := pickWeighted(tt.list, tt.avoid, r.Int64N)
				if !ok {
					continue
				}
				if !tt.want[got] {
					t.Fatalf("pickWeighted(%v, %q) = %q, want one of %v", tt.list, tt.avoid, got, tt.want)
				}
				seen[got] = true
			}
			for addr := range tt.want {
				if !seen[addr] {
					t.Errorf("pickWeighted(%v, %q) never picked %q in 1000 draws", tt.list, tt.avoid, addr)
				}
			}
		})
	}
}

// TestPickWeightedProportions checks the draw with a randN that walks every
// value: each manager owns exactly its weight's share.
func TestPickWeightedProportions(t *testing.T) {
	list := []manager{{Addr: "a", Weight: 1}, {Addr: "b", Weight: 0}, {Addr: "c", Weight: 3}}
	counts := map[string]int{}
	for i := range int64(4) {
		got, _ := pickWeighted(list, "", func(n int64) int64 {
			if n != 4 {
				t.Fatalf("randN(%d), want randN(4): the sum of positive weights", n)
			}
			return i
		})
		counts[got]++
	}
	if counts["a"] != 1 || counts["c"] != 3 {
		t.Errorf("picks over every draw = %v, want a:1 c:3", counts)
	}
}

func TestBackoff(t *testing.T) {
	var ceilings []time.Duration
	b := backoff{base: 100 * time.Millisecond, max: time.Second, randN: func(n int64) int64 {
		ceilings = append(ceilings, time.Duration(n-1))
		return n - 1
	}}
	for range 6 {
		b.next()
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i := range want {
		want[i] *= time.Millisecond
	}
	if !slices.Equal(ceilings, want) {
		t.Errorf("backoff ceilings = %v, want %v", ceilings, want)
	}
	b.reset()
	if got := b.next(); got != 100*time.Millisecond {
		t.Errorf("after reset, next = %s, want the base 100ms", got)
	}
	// Full jitter: the draw may be as small as zero.
	b = backoff{base: time.Second, max: time.Minute, failures: 1000, randN: func(int64) int64 { return 0 }}
	if got := b.next(); got != 0 {
		t.Errorf("next with a zero draw = %s, want 0", got)
	}
}

func TestManagerListPersists(t *testing.T) {
	dir := t.TempDir()
	m, err := newManagerList([]string{"10.0.0.1:4242"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.addrs(); !slices.Equal(got, []string{"10.0.0.1:4242"}) {
		t.Fatalf("addrs() = %v, want the configured address", got)
	}
	changed, err := m.update([]*workerv1.WeightedManager{
		{Addr: "10.0.0.2:4242", NodeId: "m2", Weight: 10},
		{Addr: "10.0.0.3:4242", NodeId: "m3", Weight: 0},
		{Addr: "10.0.0.2:4242", NodeId: "dup", Weight: 5},
	})
	if err != nil || !changed {
		t.Fatalf("update = %v, %v, want true, nil", changed, err)
	}
	if changed, err := m.update([]*workerv1.WeightedManager{{Addr: "10.0.0.2:4242", NodeId: "m2", Weight: 10}, {Addr: "10.0.0.3:4242", NodeId: "m3"}}); changed || err != nil {
		t.Errorf("update with the same list = %v, %v, want false, nil", changed, err)
	}
	if _, err := m.update([]*workerv1.WeightedManager{{Addr: "10.0.0.9:4242", Weight: 0}}); err == nil {
		t.Error("update with only weight 0 = nil error, want a refusal")
	}

	// A new agent starts from the saved list, plus configured addresses it
	// lacks.
	m2, err := newManagerList([]string{"10.0.0.3:4242", "10.0.0.4:4242"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []manager{
		{Addr: "10.0.0.2:4242", NodeID: "m2", Weight: 10},
		{Addr: "10.0.0.3:4242", NodeID: "m3", Weight: 0},
		{Addr: "10.0.0.4:4242", Weight: defaultWeight},
	}
	if !slices.Equal(m2.list, want) {
		t.Errorf("reloaded list = %v, want %v", m2.list, want)
	}

	if _, err := newManagerList(nil, t.TempDir()); err == nil {
		t.Error("newManagerList with nothing configured or saved = nil error, want one")
	}
	if err := os.WriteFile(filepath.Join(dir, managersFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newManagerList([]string{"10.0.0.1:4242"}, dir); err == nil {
		t.Error("newManagerList with a corrupt file = nil error, want one")
	}
}
