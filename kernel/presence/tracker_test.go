package presence

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// downCall is one call of Run's down function.
type downCall struct {
	at  time.Time
	ids []string
}

// recorder is a down function that remembers its calls.
type recorder struct {
	mu    sync.Mutex
	calls []downCall
}

func (r *recorder) down(ids []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, downCall{at: time.Now(), ids: ids})
}

func (r *recorder) get() []downCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// ids is every node reported down so far, sorted.
func (r *recorder) ids() []string {
	var ids []string
	for _, c := range r.get() {
		ids = append(ids, c.ids...)
	}
	slices.Sort(ids)
	return ids
}

// run starts tr.Run in the bubble and stops it when the test ends; Run must
// return nil.
func run(t *testing.T, tr *Tracker) *recorder {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	rec := &recorder{}
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, rec.down) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v, want nil after cancel", err)
		}
	})
	synctest.Wait() // Run is waiting
	return rec
}

// fixed is a Rand that always returns u.
func fixed(u float64) func() float64 { return func() float64 { return u } }

// seeded is a deterministic Rand, safe for concurrent use.
func seeded(seed uint64) func() float64 {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, seed))
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return rng.Float64()
	}
}

// constPeriod is a Period that always returns p.
func constPeriod(p time.Duration) func() time.Duration { return func() time.Duration { return p } }

// TestBeatOnTimeNeverDown runs nodes that ping as told, or late, or losing
// pings within the grace, for many periods: none may be reported.
func TestBeatOnTimeNeverDown(t *testing.T) {
	const p = 5 * time.Second
	tests := []struct {
		name string
		next func(r time.Duration) time.Duration // when the node pings again
	}{
		{"on time", func(r time.Duration) time.Duration { return r }},
		{"late by one period", func(r time.Duration) time.Duration { return r + p }},
		{"late by almost two periods", func(r time.Duration) time.Duration { return r + 2*p - time.Millisecond }},
		{"every other ping lost", func(r time.Duration) time.Duration { return 2 * r }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := NewTracker(Config{Period: constPeriod(p), Rand: seeded(1)})
				rec := run(t, tr)
				ctx, cancel := context.WithCancel(t.Context())
				var wg sync.WaitGroup
				for i := range 50 {
					wg.Go(func() {
						id := fmt.Sprintf("node-%d", i)
						for ctx.Err() == nil {
							r := tr.Beat(id)
							time.Sleep(tt.next(r))
						}
					})
				}
				time.Sleep(200 * p)
				synctest.Wait()
				if got := rec.get(); len(got) != 0 {
					t.Errorf("down calls = %v, want none", got)
				}
				cancel()
				wg.Wait()
			})
		})
	}
}

// TestSilentNodeDown checks when a node that stops pinging is reported:
// Jitter·p after its deadline now + r + (Grace-1)·p, and so within
// [(Grace-Jitter)·p, (Grace+2·Jitter)·p] of its last ping.
func TestSilentNodeDown(t *testing.T) {
	const p = 5 * time.Second
	tests := []struct {
		name   string
		u      float64 // Rand
		grace  int
		jitter float64
		want   time.Duration // from the last beat to the report
	}{
		{"shortest reply", 0, 3, 0.25, 3750*time.Millisecond + 10*time.Second + 1250*time.Millisecond},
		{"no jitter drawn", 0.5, 3, 0.25, 5*time.Second + 10*time.Second + 1250*time.Millisecond},
		{"long reply", 0.875, 3, 0.25, 5937500*time.Microsecond + 10*time.Second + 1250*time.Millisecond},
		// 1-2⁻¹⁰: r = 5s × 1.24951171875, truncated to the nanosecond.
		{"longest reply", 1 - 1.0/1024, 3, 0.25, 6247558593*time.Nanosecond + 10*time.Second + 1250*time.Millisecond},
		{"grace 2", 0.5, 2, 0.25, 5*time.Second + 5*time.Second + 1250*time.Millisecond},
		{"grace 5, jitter 0.1", 0.5, 5, 0.1, 5*time.Second + 20*time.Second + 500*time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := NewTracker(Config{Period: constPeriod(p), Grace: tt.grace, Jitter: tt.jitter, Rand: fixed(tt.u)})
				rec := run(t, tr)
				r := tr.Beat("a")
				time.Sleep(r) // one ping on time, then silence
				tr.Beat("a")
				last := time.Now()

				time.Sleep(tt.want - time.Nanosecond)
				synctest.Wait()
				if got := rec.get(); len(got) != 0 {
					t.Fatalf("down calls %v before %v of silence, want none", got, tt.want)
				}
				time.Sleep(time.Nanosecond)
				synctest.Wait()
				got := rec.get()
				if len(got) != 1 || !slices.Equal(got[0].ids, []string{"a"}) {
					t.Fatalf("down calls after %v of silence = %v, want one of [a]", tt.want, got)
				}
				silence := got[0].at.Sub(last)
				lo := time.Duration((float64(tt.grace) - tt.jitter) * float64(p))
				hi := time.Duration((float64(tt.grace) + 2*tt.jitter) * float64(p))
				if silence < lo || silence > hi {
					t.Errorf("reported after %v of silence, want within [%v, %v]", silence, lo, hi)
				}
				if n := tr.Len(); n != 0 {
					t.Errorf("Len() after down = %d, want 0", n)
				}
			})
		})
	}
}

// TestManyNodesExpireTogether checks that nodes that fall silent together
// are reported in one or two batches, not one call per node.
func TestManyNodesExpireTogether(t *testing.T) {
	const n = 1000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("node-%04d", i)
	}
	tests := []struct {
		name     string
		start    func(tr *Tracker)
		maxCalls int
	}{
		{"beat with jitter", func(tr *Tracker) {
			for _, id := range ids {
				tr.Beat(id)
			}
		}, 2},
		{"expected", func(tr *Tracker) { tr.Expect(ids, 30*time.Second) }, 1},
		{"beat on their own schedules, then all stop", func(tr *Tracker) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			var wg sync.WaitGroup
			for i, id := range ids {
				wg.Go(func() {
					time.Sleep(time.Duration(i) * 5 * time.Millisecond) // spread over a period
					for ctx.Err() == nil {
						time.Sleep(tr.Beat(id))
					}
				})
			}
			wg.Wait()
		}, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := NewTracker(Config{Period: constPeriod(5 * time.Second), Rand: seeded(2)})
				rec := run(t, tr)
				tt.start(tr)
				time.Sleep(time.Minute)
				synctest.Wait()
				calls := rec.get()
				if len(calls) == 0 || len(calls) > tt.maxCalls {
					t.Errorf("%d down calls, want 1 to %d", len(calls), tt.maxCalls)
				}
				if got := rec.ids(); !slices.Equal(got, ids) {
					t.Errorf("reported %d nodes (%d distinct), want each of %d once", len(got), len(slices.Compact(got)), n)
				}
			})
		})
	}
}

// TestExpect checks the start of a leadership term: expected nodes that
// beat stay up, the silent ones are reported together when the grace ends.
func TestExpect(t *testing.T) {
	const grace = 20 * time.Second
	tests := []struct {
		name     string
		beat     []string // beat once before the grace ends, then keep beating
		wantDown []string
	}{
		{"all silent", nil, []string{"a", "b", "c"}},
		{"one beats", []string{"b"}, []string{"a", "c"}},
		{"all beat", []string{"a", "b", "c"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const p = 5 * time.Second
				tr := NewTracker(Config{Period: constPeriod(p), Rand: fixed(0.5)})
				rec := run(t, tr)
				start := time.Now()
				tr.Expect([]string{"a", "b", "c"}, grace)
				if n := tr.Len(); n != 3 {
					t.Errorf("Len() after Expect = %d, want 3", n)
				}
				ctx, cancel := context.WithCancel(t.Context())
				var wg sync.WaitGroup
				for _, id := range tt.beat {
					wg.Go(func() {
						time.Sleep(grace / 2) // reconnects within the grace
						for ctx.Err() == nil {
							time.Sleep(tr.Beat(id))
						}
					})
				}
				time.Sleep(2 * grace)
				synctest.Wait()
				cancel()
				wg.Wait()

				calls := rec.get()
				if !slices.Equal(rec.ids(), tt.wantDown) {
					t.Errorf("reported down %v, want %v", rec.ids(), tt.wantDown)
				}
				if tt.wantDown != nil {
					if len(calls) != 1 {
						t.Fatalf("%d down calls, want 1", len(calls))
					}
					// Jitter·p after the grace, the batching window.
					if got, want := calls[0].at.Sub(start), grace+p/4; got != want {
						t.Errorf("reported %v after Expect, want %v", got, want)
					}
				}
			})
		})
	}
}

// TestExpectKeepsLaterDeadline checks that Expect never makes a node that
// already beat look late, and that grace ≤ 0 means Grace periods.
func TestExpectKeepsLaterDeadline(t *testing.T) {
	tr := NewTracker(Config{Period: constPeriod(5 * time.Second), Rand: fixed(0.5), Now: func() time.Time { return t0 }})
	tr.Beat("a") // deadline t0 + 15s
	tr.Expect([]string{"a", "b", "c"}, time.Second)
	tr.Expect([]string{"c"}, 0)
	tests := []struct {
		id   string
		want time.Time
	}{
		{"a", t0.Add(15 * time.Second)},
		{"b", t0.Add(time.Second)},
		{"c", t0.Add(15 * time.Second)},
	}
	for _, tt := range tests {
		tr.mu.Lock()
		got, _ := tr.heap.Deadline(tt.id)
		tr.mu.Unlock()
		if !got.Equal(tt.want) {
			t.Errorf("deadline of %q = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestForget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := NewTracker(Config{Period: constPeriod(time.Second)})
		rec := run(t, tr)
		tr.Beat("a")
		tr.Beat("b")
		tr.Expect([]string{"c"}, time.Second)
		tr.Forget("a")
		tr.Forget("c")
		tr.Forget("never-seen")
		if n := tr.Len(); n != 1 {
			t.Errorf("Len() = %d, want 1", n)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if got, want := rec.ids(), []string{"b"}; !slices.Equal(got, want) {
			t.Errorf("reported down %v, want %v", got, want)
		}
	})
}

// TestPeriodChange checks that a new period is handed out, and used for the
// deadline, from the next Beat on, and that deadlines already set stand.
func TestPeriodChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var period atomic.Int64
		period.Store(int64(time.Second))
		tr := NewTracker(Config{Period: func() time.Duration { return time.Duration(period.Load()) }, Rand: seeded(3)})
		rec := run(t, tr)

		tr.Beat("fast") // deadline within 3.25s; must stand after the change
		if r := tr.Beat("slow"); r < 750*time.Millisecond || r >= 1250*time.Millisecond {
			t.Errorf("Beat() with period 1s = %v, want in [750ms, 1.25s)", r)
		}
		period.Store(int64(10 * time.Second))
		r := tr.Beat("slow")
		if r < 7500*time.Millisecond || r >= 12500*time.Millisecond {
			t.Errorf("Beat() after the period became 10s = %v, want in [7.5s, 12.5s)", r)
		}
		// "slow" pings every new period, late by more than two old periods:
		// its deadline follows the new period, so it stays up.
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() {
			for ctx.Err() == nil {
				time.Sleep(r + 5*time.Second)
				r = tr.Beat("slow")
			}
		})
		// fast's deadline was set with the 1s period: at most 3.25s, then
		// reported within the batching window, a quarter of the new period.
		time.Sleep(6 * time.Second)
		synctest.Wait()
		if got, want := rec.ids(), []string{"fast"}; !slices.Equal(got, want) {
			t.Errorf("reported down after 6s %v, want %v", got, want)
		}
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if got, want := rec.ids(), []string{"fast"}; !slices.Equal(got, want) {
			t.Errorf("reported down after 5m %v, want %v", got, want)
		}
		cancel()
		wg.Wait()
	})
}

// TestJitter checks that replies stay within period ± Jitter and are spread.
func TestJitter(t *testing.T) {
	const p = 4 * time.Second
	t.Run("bounds", func(t *testing.T) {
		tests := []struct {
			u      float64
			jitter float64
			want   time.Duration
		}{
			{0, 0.25, 3 * time.Second},
			{0.5, 0.25, 4 * time.Second},
			{0.75, 0.25, 4500 * time.Millisecond},
			{0, 0.1, 3600 * time.Millisecond},
			{0.5, 0.1, 4 * time.Second},
		}
		for _, tt := range tests {
			tr := NewTracker(Config{Period: constPeriod(p), Jitter: tt.jitter, Rand: fixed(tt.u), Now: func() time.Time { return t0 }})
			if got := tr.Beat("a"); got != tt.want {
				t.Errorf("Beat() with period %v, jitter %v, rand %v = %v, want %v", p, tt.jitter, tt.u, got, tt.want)
			}
		}
	})
	t.Run("spread", func(t *testing.T) {
		tr := NewTracker(Config{Period: constPeriod(p), Now: func() time.Time { return t0 }}) // the default Rand
		const n = 2000
		lo, hi := 3*time.Second, 5*time.Second
		seen := map[time.Duration]bool{}
		var sum float64
		minR, maxR := time.Duration(math.MaxInt64), time.Duration(0)
		for i := range n {
			r := tr.Beat(fmt.Sprintf("node-%d", i%100))
			if r < lo || r >= hi {
				t.Fatalf("Beat() = %v, want in [%v, %v)", r, lo, hi)
			}
			seen[r] = true
			sum += float64(r)
			minR, maxR = min(minR, r), max(maxR, r)
		}
		if len(seen) < n*9/10 {
			t.Errorf("%d distinct periods in %d replies, want at least %d", len(seen), n, n*9/10)
		}
		// A uniform draw: the extremes are near the bounds and the mean
		// near the period (its standard error here is about 13ms).
		if minR > 3100*time.Millisecond || maxR < 4900*time.Millisecond {
			t.Errorf("replies span [%v, %v], want about [%v, %v]", minR, maxR, lo, hi)
		}
		if mean := time.Duration(sum / n); mean < p-100*time.Millisecond || mean > p+100*time.Millisecond {
			t.Errorf("mean reply = %v, want about %v", mean, p)
		}
	})
}

func TestDefaultPeriod(t *testing.T) {
	tests := []struct {
		name   string
		period func() time.Duration
	}{
		{"nil", nil},
		{"zero", constPeriod(0)},
		{"negative", constPeriod(-time.Second)},
	}
	for _, tt := range tests {
		tr := NewTracker(Config{Period: tt.period, Rand: fixed(0.5)})
		if got := tr.Beat("a"); got != DefaultPeriod {
			t.Errorf("%s Period: Beat() = %v, want %v", tt.name, got, DefaultPeriod)
		}
	}
}

// TestWakeOnEarlierDeadline checks that a deadline earlier than the one Run
// waits for is honoured: Run must not sleep through it.
func TestWakeOnEarlierDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := NewTracker(Config{Period: constPeriod(time.Second), Rand: fixed(0.5)})
		rec := run(t, tr)
		tr.Expect([]string{"far"}, time.Hour)
		synctest.Wait() // Run waits for the hour
		start := time.Now()
		tr.Beat("near") // deadline in 3s
		time.Sleep(time.Minute)
		synctest.Wait()
		calls := rec.get()
		if len(calls) != 1 || !slices.Equal(calls[0].ids, []string{"near"}) {
			t.Fatalf("down calls = %v, want one of [near]", calls)
		}
		if got, want := calls[0].at.Sub(start), 3250*time.Millisecond; got != want {
			t.Errorf("near reported after %v, want %v", got, want)
		}
	})
}

// TestStall checks that when the leader was frozen longer than a period,
// nodes get a fresh grace instead of being reported down all at once.
func TestStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const p = time.Second
		// offset fakes a freeze: the clock jumps while no goroutine runs.
		var offset atomic.Int64
		now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		tr := NewTracker(Config{Period: constPeriod(p), Rand: fixed(0.5), Now: now})
		rec := run(t, tr)
		tr.Beat("a")
		tr.Beat("b") // both due at +3s; Run's timer fires at +3.25s
		time.Sleep(p / 2)
		offset.Store(int64(10 * time.Second))
		time.Sleep(3 * time.Second) // the timer fires at +3.25s, 10s late
		synctest.Wait()
		if got := rec.get(); len(got) != 0 {
			t.Fatalf("down calls right after the stall = %v, want none", got)
		}
		if n := tr.Len(); n != 2 {
			t.Fatalf("Len() after the stall = %d, want 2", n)
		}
		// a reconnects; b stays silent and is reported a grace later.
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() {
			for ctx.Err() == nil {
				time.Sleep(tr.Beat("a"))
			}
		})
		time.Sleep(time.Minute)
		synctest.Wait()
		if got, want := rec.ids(), []string{"b"}; !slices.Equal(got, want) {
			t.Errorf("reported down %v, want %v", got, want)
		}
		cancel()
		wg.Wait()
	})
}

// TestDownBatchesWhileBusy checks that expirations that come due while down
// runs are reported in the next call, none lost.
func TestDownBatchesWhileBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := NewTracker(Config{Period: constPeriod(time.Second), Rand: seeded(4)})
		var mu sync.Mutex
		var got []string
		calls := 0
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			done <- tr.Run(ctx, func(ids []string) {
				mu.Lock()
				got = append(got, ids...)
				calls++
				mu.Unlock()
				time.Sleep(5 * time.Second) // a slow Raft write
			})
		}()
		var want []string
		for i := range 100 {
			id := fmt.Sprintf("node-%03d", i)
			want = append(want, id)
			tr.Expect([]string{id}, time.Duration(i)*100*time.Millisecond)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("reported %d nodes, want each of %d once", len(got), len(want))
		}
		if calls > 10 {
			t.Errorf("%d down calls for expirations spread over 10s with 5s writes, want few", calls)
		}
	})
}

func TestRunTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := NewTracker(Config{})
		run(t, tr)
		if err := tr.Run(t.Context(), func([]string) {}); err == nil {
			t.Errorf("second concurrent Run() = nil, want an error")
		}
	})
}

// TestConcurrent hammers a running Tracker from many goroutines, for the
// race detector, and checks that nodes that kept beating are never reported.
func TestConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := NewTracker(Config{Period: constPeriod(time.Second)})
		rec := run(t, tr)
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() { // beaters: never down
				for ctx.Err() == nil {
					for i := range 20 {
						tr.Beat(fmt.Sprintf("up-%d-%d", g, i))
					}
					time.Sleep(700 * time.Millisecond)
				}
			})
			wg.Go(func() { // churn: come and go, or fall silent
				for i := 0; ctx.Err() == nil; i++ {
					id := fmt.Sprintf("churn-%d-%d", g, i%50)
					switch i % 3 {
					case 0:
						tr.Beat(id)
					case 1:
						tr.Expect([]string{id}, time.Duration(i%7)*time.Second)
					default:
						tr.Forget(id)
					}
					_ = tr.Len()
					time.Sleep(37 * time.Millisecond)
				}
			})
		}
		time.Sleep(30 * time.Second)
		cancel()
		wg.Wait()
		synctest.Wait()
		for _, id := range rec.ids() {
			if id[:3] == "up-" {
				t.Errorf("beating node %s reported down", id)
			}
		}
	})
}

func TestNewTrackerInvalid(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"grace 1", Config{Grace: 1}},
		{"grace negative", Config{Grace: -3}},
		{"jitter 1", Config{Jitter: 1}},
		{"jitter above 1", Config{Jitter: 1.5}},
		{"jitter negative", Config{Jitter: -0.1}},
		{"jitter NaN", Config{Jitter: math.NaN()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("NewTracker(%+v) did not panic", tt.cfg)
				}
			}()
			NewTracker(tt.cfg)
		})
	}
}

func TestBeatAllocs(t *testing.T) {
	tr := NewTracker(Config{Period: constPeriod(5 * time.Second)})
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = fmt.Sprintf("node-%d", i)
		tr.Beat(ids[i])
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		tr.Beat(ids[i%len(ids)])
		i++
	}); n != 0 {
		t.Errorf("Beat() of a tracked node allocates %v times, want 0", n)
	}
}
