package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// sentReport is a report as a fake session received it.
type sentReport struct {
	at      time.Duration // since the test started, on the bubble's clock
	updates []string      // "task:STATE"
}

// recorder is a fake session's send side.
type recorder struct {
	start time.Time
	fail  error

	mu   sync.Mutex
	sent []sentReport
}

func (r *recorder) send(rep *workerv1.StatusReport) error {
	if r.fail != nil {
		return r.fail
	}
	var ups []string
	for _, u := range rep.GetUpdates() {
		ups = append(ups, u.GetTaskId()+":"+u.GetStatus().GetState().String())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, sentReport{at: time.Since(r.start), updates: ups})
	return nil
}

func (r *recorder) reports() []sentReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sent)
}

func status(s objectv1.TaskState) *objectv1.TaskStatus { return &objectv1.TaskStatus{State: s} }

func TestReporterBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rep := newReporter(3, 100*time.Millisecond)
		rec := &recorder{start: time.Now()}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go rep.run(ctx, rec.send)
		synctest.Wait()
		if got := rec.reports(); len(got) != 0 {
			t.Fatalf("with nothing known, reports = %v, want none", got)
		}

		// A change after a quiet interval goes at once; changes soon
		// after it wait for the interval since that report.
		rep.report("a", status(stateAccepted))
		synctest.Wait()
		time.Sleep(50 * time.Millisecond)
		rep.report("a", status(statePreparing))
		rep.report("b", status(stateAccepted))
		rep.report("b", status(statePreparing)) // coalesced with b's first
		synctest.Wait()
		if got := rec.reports(); len(got) != 1 {
			t.Fatalf("before the interval, reports = %v, want only the first change's", got)
		}
		time.Sleep(50 * time.Millisecond)
		synctest.Wait()

		// A full batch goes at once; the rest waits.
		for i := range 4 {
			rep.report(fmt.Sprintf("t%d", i), status(stateRunning))
		}
		synctest.Wait()
		time.Sleep(200 * time.Millisecond)

		want := []sentReport{
			{at: 0, updates: []string{"a:TASK_STATE_ACCEPTED"}},
			{at: 100 * time.Millisecond, updates: []string{"a:TASK_STATE_PREPARING", "b:TASK_STATE_PREPARING"}},
			{at: 100 * time.Millisecond, updates: []string{"t0:TASK_STATE_RUNNING", "t1:TASK_STATE_RUNNING", "t2:TASK_STATE_RUNNING"}},
			{at: 200 * time.Millisecond, updates: []string{"t3:TASK_STATE_RUNNING"}},
		}
		if got := rec.reports(); !equalReports(got, want) {
			t.Errorf("reports = %v, want %v", got, want)
		}
	})
}

func TestReporterResyncsEachSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rep := newReporter(2, 100*time.Millisecond)
		rep.report("c", status(stateRunning))
		rep.report("a", status(stateRunning))
		rep.report("b", status(stateAccepted))
		rep.report("gone", status(stateAccepted))
		rep.forget("gone")

		// A session that breaks on its first send loses nothing.
		broken := &recorder{start: time.Now(), fail: errors.New("stream broken")}
		if err := rep.run(t.Context(), broken.send); err == nil {
			t.Fatal("run with a failing send = nil, want the send's error")
		}
		rep.report("b", status(stateRunning))

		rec := &recorder{start: time.Now()}
		ctx, cancel := context.WithCancel(t.Context())
		go rep.run(ctx, rec.send)
		synctest.Wait()
		cancel()
		want := []sentReport{
			{updates: []string{"a:TASK_STATE_RUNNING", "b:TASK_STATE_RUNNING"}},
			{updates: []string{"c:TASK_STATE_RUNNING"}},
		}
		if got := rec.reports(); !equalReports(got, want) {
			t.Errorf("reports of a new session = %v, want every known task at once %v", got, want)
		}
	})
}

func equalReports(a, b []sentReport) bool {
	return slices.EqualFunc(a, b, func(x, y sentReport) bool {
		return x.at == y.at && slices.Equal(x.updates, y.updates)
	})
}
