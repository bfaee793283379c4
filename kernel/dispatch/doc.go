// Package dispatch is the kernel's side of the worker protocol
// (sdk/proto/shoal/worker/v1).
//
// On the leader, a Dispatcher (a leader-only stage) holds one session per
// connected worker, whether the worker's stream reaches it directly or
// through a follower's relay. For each session it keeps the node's
// assignment set and streams changes to it — never whole lists after the
// first — in batches of up to 100 changes or every 100 ms, whichever comes
// first. Workers' status reports are gathered the same way into batched Raft
// writes. Heartbeats go to the presence tracker (one heap of deadlines, no
// Raft write); only Up/Down transitions are committed, in batches.
//
// Task logs (logs.go) travel over the same sessions: the leader subscribes
// each involved worker to its tasks' logs and fans the batches they send,
// flow-controlled by credit, into the caller's stream.
//
// On a follower, nothing is dispatched: the Service relays all its workers'
// streams to the leader over one Relay stream and, when the leader changes,
// re-opens them on the new leader without the workers noticing.
//
// Goroutines: the Dispatcher's Run owns one event loop that applies store
// events and session opens/closes to the sessions' assignment sets (so that
// state needs no lock), a status batcher and a node-state batcher. Each
// session owns one sender goroutine so that a slow worker never blocks the
// loop. Run returns after all of them exit, having closed every session.
package dispatch
