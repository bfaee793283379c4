// Package raftstore replicates the cluster state with hashicorp/raft.
//
// A Node owns one Raft server: its log and stable store (raft-wal, fsync on
// every append), its snapshots, its TLS transport and the FSM that applies
// committed commands to a state.Store. Writers never touch Raft directly:
// they call Update, which prepares a transaction against the local state and
// hands it to the batched proposer.
//
// The batched proposer is the reason writes scale. Every concurrent writer's
// transaction goes into one queue; one goroutine drains whatever is queued
// (up to maxEntryBytes) into a single raftv1.Command, so a burst of writes
// costs a handful of log entries and fsyncs instead of one each. Commands are
// pipelined: the proposer does not wait for one entry to commit before
// proposing the next, and hashicorp/raft further groups pipelined entries
// into one disk write and one AppendEntries RPC. Each writer gets back the
// result of its own transaction.
//
// Goroutines: Run owns the proposer and the waiter that resolves futures; it
// returns after both exit and Raft has shut down. Only the leader accepts
// proposals; followers' callers get ErrNotLeader and forward at the API layer.
package raftstore
