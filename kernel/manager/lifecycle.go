package manager

import "time"

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
