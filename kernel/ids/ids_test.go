package ids

import "testing"

func TestNew(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := New()
		if len(id) != Length {
			t.Fatalf("len(New()) = %d, want %d", len(id), Length)
		}
		for _, c := range id {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
				t.Fatalf("New() = %q has %q, want base 36", id, c)
			}
		}
		if seen[id] {
			t.Fatalf("New() repeated %q", id)
		}
		seen[id] = true
	}
}

func BenchmarkNew(b *testing.B) {
	for b.Loop() {
		New()
	}
}

// TestNewIsUniform checks that every character of the alphabet comes up
// about equally often (a modulo bias would favour the first ones).
func TestNewIsUniform(t *testing.T) {
	counts := map[rune]int{}
	const ids = 4000
	for range ids {
		for _, c := range New() {
			counts[c]++
		}
	}
	want := float64(ids*Length) / 36
	for c, n := range counts {
		if d := float64(n) - want; d > 0.1*want || d < -0.1*want {
			t.Errorf("%q came %d times, want about %.0f", c, n, want)
		}
	}
	if len(counts) != 36 {
		t.Errorf("%d distinct characters, want 36", len(counts))
	}
}
