package clustertest

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// stopBound is how long a manager may take to exit after SIGTERM. It is a
// safety net, not a timing claim: a manager bounds each step of its
// shutdown (the API's drain, its parts, the leadership transfer, raft's
// shutdown) to a few seconds, whatever its peers do.
const stopBound = 20 * time.Second

// TestStopWithoutPeers SIGTERMs one of three managers (the
// leader, or a follower) right after the two others went away: paused
// (SIGSTOP: their connections stay open, new ones are accepted by the
// kernel, and nothing answers, as when a firewall drops their packets; a
// firewall rule would also cut off other tests' clusters on the same
// loopback addresses) or killed. It must exit within stopBound, through its
// graceful shutdown.
func TestStopWithoutPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	pause := func(t *testing.T, m *Manager) {
		if err := syscall.Kill(m.Pid(), syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		// SIGKILL ends a stopped process too.
		t.Cleanup(m.Kill)
	}
	kill := func(t *testing.T, m *Manager) { m.Kill() }
	for _, tc := range []struct {
		name   string
		leader bool // SIGTERM the leader, else a follower
		gone   func(t *testing.T, m *Manager)
	}{
		{"leader-paused", true, pause},
		{"leader-killed", true, kill},
		{"follower-paused", false, pause},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Start(t, 3, Options{})
			leader := c.Leader(t, 30*time.Second)
			target := leader
			if !tc.leader {
				for _, m := range c.Managers {
					if m != leader {
						target = m
						break
					}
				}
			}
			for _, m := range c.Managers {
				if m != target {
					tc.gone(t, m)
				}
			}
			took := terminateWithin(t, target, stopBound)
			t.Logf("%s exited %s after SIGTERM", target.Name, took.Round(time.Millisecond))
			if log := target.Log(); !strings.Contains(log, "manager stopped") {
				t.Errorf("%s exited without stopping gracefully; log tail:\n%s", target.Name, tail(log, 4000))
			}
		})
	}
}

// terminateWithin sends m SIGTERM and waits up to bound for it to exit,
// failing the test (and killing it) if it does not. It returns how long
// the exit took.
func terminateWithin(t *testing.T, m *Manager, bound time.Duration) time.Duration {
	t.Helper()
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.mu.Unlock()
	if cmd == nil {
		t.Fatalf("%s is not running", m.Name)
	}
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(bound):
		cmd.Process.Kill()
		<-done
		t.Errorf("%s did not exit within %s of SIGTERM; log tail:\n%s", m.Name, bound, tail(m.Log(), 4000))
	}
	took := time.Since(start)
	m.mu.Lock()
	m.cmd = nil
	m.mu.Unlock()
	return took
}
