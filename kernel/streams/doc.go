// Package streams holds what the kernel's gRPC servers do with a stream
// the same way everywhere: First receives a stream's opening message (a
// worker's hello, an exec's attach or start) within a deadline, so that a
// caller that opens a stream and stays silent does not hold a handler for
// good; Relay passes a bidirectional stream on to another server, both
// ways, as it is (a follower forwarding to the leader).
package streams
