//go:build race

package gossip

// raceEnabled: the race detector slows memberlist down about tenfold, and 50
// members on two shared cores then miss their failure-detection deadlines
// and flap; the tests run a smaller cluster under it.
const raceEnabled = true
