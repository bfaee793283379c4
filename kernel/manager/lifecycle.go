package manager

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shoalhq/shoal/kernel/allocator"
	"github.com/shoalhq/shoal/kernel/dispatch"
	"github.com/shoalhq/shoal/kernel/orchestrator"
	"github.com/shoalhq/shoal/kernel/placement"
	"github.com/shoalhq/shoal/kernel/presence"
	"github.com/shoalhq/shoal/kernel/raftstore"
	"github.com/shoalhq/shoal/kernel/secrets"
	"github.com/shoalhq/shoal/sdk"
)

// How a leader restarts its stages after a failure (see leadLoop).
const (
	// minStageBackoff is the wait before the first restart; each failure
	// in a row doubles it, up to maxStageBackoff.
	minStageBackoff = 200 * time.Millisecond
	maxStageBackoff = 5 * time.Second
	// stageHealthyRun is how long stages must have run for their failure
	// not to count as one more in a row.
	stageHealthyRun = 30 * time.Second
	// maxStageFailures is how many failures in a row make the leader hand
	// leadership over, so that another manager tries.
	maxStageFailures = 5
	// stepDownWait bounds that hand-over.
	stepDownWait = 5 * time.Second
	// stageRecheck is how soon stages that stopped as leadership went are
	// looked at again, in case it came back without notice.
	stageRecheck = time.Second
)

// stageBackoff is the wait before restarting stages after their n-th
// failure in a row (n >= 1).
func stageBackoff(n int) time.Duration {
	d := minStageBackoff
	for i := 1; i < n && d < maxStageBackoff; i++ {
		d *= 2
	}
	return min(d, maxStageBackoff)
}

// partsStopWait bounds how long Run waits for its parts to stop before it
// stops raft anyway: the API's drain (5 s) and a little more.
const partsStopWait = 7 * time.Second

// leadLoop runs the leader stages while this manager leads. Stages that
// stop while it still leads (one failed: a state watch that overflowed, a
// write that failed for good) are started again after a backoff that grows
// with each failure in a row; after maxStageFailures in a row the manager
// hands leadership to another manager if there is one, and keeps
// restarting them if not. A leader never runs without its stages.
func (m *Manager) leadLoop(ctx context.Context, leadership <-chan bool) error {
	s := &stageLoop{m: m}
	defer func() {
		s.cancelRestart()
		s.stopStages()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case l, ok := <-leadership:
			if !ok {
				return nil
			}
			s.leadershipChanged(ctx, l)
		case err := <-s.done:
			s.stagesStopped(ctx, err)
		case <-s.restart:
			s.restartTimer, s.restart = nil, nil
			if !m.raft.IsLeader() {
				s.scheduleRestart(stageRecheck)
				continue
			}
			m.log.Info("restarting leader stages")
			s.startStages(ctx)
		}
	}
}

// stageLoop is leadLoop's state, owned by its goroutine.
type stageLoop struct {
	m *Manager
	// stop and done are those of the running stages; nil when none run.
	stop    context.CancelFunc
	done    chan error
	started time.Time
	leads   bool
	// failures counts stage runs in a row that failed soon after they
	// started.
	failures int
	// restart fires when stopped stages are due to start again.
	restart      <-chan time.Time
	restartTimer *time.Timer
}

func (s *stageLoop) startStages(ctx context.Context) {
	sctx, cancel := context.WithCancel(ctx)
	s.stop, s.done, s.started = cancel, make(chan error, 1), time.Now()
	go func() { s.done <- s.m.runLeaderStages(sctx) }()
}

func (s *stageLoop) stopStages() error {
	if s.stop == nil {
		return nil
	}
	s.stop()
	err := <-s.done
	s.stop, s.done = nil, nil
	return err
}

func (s *stageLoop) scheduleRestart(after time.Duration) {
	s.restartTimer = time.NewTimer(after)
	s.restart = s.restartTimer.C
}

func (s *stageLoop) cancelRestart() {
	if s.restartTimer != nil {
		s.restartTimer.Stop()
		s.restartTimer, s.restart = nil, nil
	}
}

// leadershipChanged starts or stops the stages as leadership comes or goes.
func (s *stageLoop) leadershipChanged(ctx context.Context, l bool) {
	switch {
	case l && !s.leads:
		s.m.log.Info("became leader; starting leader stages")
		s.failures = 0
		s.cancelRestart()
		if s.stop == nil {
			s.startStages(ctx)
		}
	case l && s.stop == nil && s.restart == nil:
		// Still leading, as far as this channel tells, yet nothing
		// runs: leadership flickered while the stages stopped.
		s.startStages(ctx)
	case !l && s.leads:
		s.m.log.Info("lost leadership; stopping leader stages")
		s.cancelRestart()
		if err := s.stopStages(); err != nil && !isChurn(err) {
			s.m.log.Warn("leader stages failed while leadership was lost", "error", err)
		}
	}
	s.leads = l
}

// stagesStopped schedules the restart of stages that returned on their
// own, and hands leadership over when they keep failing.
func (s *stageLoop) stagesStopped(ctx context.Context, err error) {
	m := s.m
	s.stop, s.done = nil, nil
	if !s.leads || ctx.Err() != nil {
		return
	}
	if err == nil {
		err = errors.New("leader stages stopped on their own")
	}
	if !m.raft.IsLeader() {
		// Leadership is going; the channel says so next. Look again
		// shortly in case it came back unnoticed.
		m.log.Info("leader stages stopped", "reason", err)
		s.scheduleRestart(stageRecheck)
		return
	}
	if time.Since(s.started) >= stageHealthyRun {
		s.failures = 0
	}
	s.failures++
	m.stageRestarts.Add(1)
	backoff := stageBackoff(s.failures)
	if s.failures < maxStageFailures {
		m.log.Warn("leader stage failed; restarting the leader stages", "error", err, "failures", s.failures, "restart_in", backoff)
	} else if serr := m.raft.StepDown(stepDownWait); serr != nil {
		m.log.Warn("leader stages keep failing and leadership could not be handed over; restarting them",
			"error", err, "failures", s.failures, "step_down_error", serr, "restart_in", backoff)
	} else {
		m.log.Warn("leader stages keep failing; handed leadership to another manager", "error", err, "failures", s.failures)
	}
	s.scheduleRestart(backoff)
}

// isChurn reports errors that come from losing leadership or quorum, which
// end the leader stages without failing the manager.
func isChurn(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, sdk.ErrUnavailable) || errors.Is(err, raftstore.ErrNotLeader)
}

// runLeaderStages makes sure the cluster object and this manager's record
// exist, then runs every leader-only stage until ctx ends or one fails.
func (m *Manager) runLeaderStages(ctx context.Context) error {
	// raft's barrier takes a timeout, not ctx: stopping the stages must
	// not wait for it.
	barrier := make(chan error, 1)
	go func() { barrier <- m.raft.Barrier(ctx) }()
	select {
	case err := <-barrier:
		if err != nil {
			return fmt.Errorf("barrier: %w: %w", err, sdk.ErrUnavailable)
		}
	case <-ctx.Done():
		return nil
	}
	if err := m.ensureCluster(ctx); err != nil {
		return err
	}
	if err := m.registerSelf(ctx); err != nil {
		return err
	}
	// A leader of a cluster from before secrets holds no key: it makes one
	// while no secret is sealed (leaderSecretsKey), and hands it to the
	// other managers as they ask (registerLoop). Without one, only secrets
	// are unavailable.
	if _, err := leaderSecretsKey(m.secrets, m.st, func(key []byte) error { return secrets.Save(secretsKeyFile(m.cfg), key) }); err != nil {
		m.log.Error("no secrets key", "error", err)
	}
	tracker := presence.NewTracker(presence.Config{
		Period: m.heartbeatPeriod,
		Logger: m.log.With("part", "presence"),
	})
	d := dispatch.New(m.raft, m.st, tracker, dispatch.Config{
		Logger:        m.log.With("part", "dispatch"),
		StatusWritten: func(n int) { m.statusWritten.Add(uint64(n)) },
		Secrets:       m.secrets,
	})
	stages := []struct {
		name string
		run  func(context.Context) error
	}{
		{"orchestrator", orchestrator.New(m.raft, m.st, m.log.With("part", "orchestrator")).Run},
		{"allocator", allocator.New(m.raft, m.st, m.ipam, m.log.With("part", "allocator")).Run},
		{"placement", placement.New(m.raft, m.st, m.sched, m.log.With("part", "placement")).Run},
		{"dispatcher", d.Run},
		{"dispatcher service", func(ctx context.Context) error { m.workers.Serve(ctx, d); return nil }},
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(stages))
	for _, st := range stages {
		go func() {
			err := st.run(ctx)
			if err != nil {
				err = fmt.Errorf("%s: %w", st.name, err)
			}
			errc <- err
		}()
	}
	// The first stage to fail stops the others: a leader with a broken
	// stage must not keep leading as if all was well.
	var first error
	for range stages {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		} else if first == nil && ctx.Err() == nil {
			first = errors.New("a leader stage returned early")
			cancel()
		}
	}
	if ctx.Err() != nil && first != nil && errors.Is(first, context.Canceled) {
		return nil
	}
	return first
}
