// Package state is the whole cluster state in memory: the cluster object,
// nodes, services, tasks, networks, secrets and configs, with the indexes
// the orchestrator, the scheduler and the dispatcher read (tasks by service,
// node, observed and desired state; nodes by role and availability;
// services, networks, secrets and configs by name).
//
// A secret's data is stored only sealed (Secret.sealed): the store refuses
// a secret whose spec.data is set, so that no writer's mistake can put clear
// secret data in the Raft log or a snapshot.
//
// It knows nothing of Raft. The raftstore package feeds it committed commands
// through Apply and snapshots through Snapshot and Restore; writers build
// those commands with Prepare. The flow of one write is:
//
//	txn, err := st.Prepare(time.Now(), func(tx *state.Tx) error { ... })  // leader, no I/O
//	... raftstore packs txn into a raftv1.Command and commits it ...
//	errs := st.Apply(index, cmd)                                           // every replica
//
// # Immutability
//
// Stored objects are immutable. Every read (View, ViewAndWatch, Snapshot,
// watch events) hands out the stored pointers themselves, shared by every
// reader and by the snapshot being written to disk. A reader MUST NOT modify
// an object it got from this package, not even a nested field: it would
// change the state behind Raft's back on this replica only, and race with
// every other reader. To change an object, proto.Clone it, modify the clone
// and pass the clone to a Tx write method.
//
// Objects passed in (to Tx writes, Apply, Restore) become owned by the store:
// the caller must not touch them afterwards.
//
// # Concurrency
//
// A Store is safe for concurrent use. View, Prepare, Snapshot and
// ViewAndWatch hold a read lock while they run, Apply and Restore the write
// lock, so every view is consistent and reflects whole commands. Functions
// passed to View, ViewAndWatch and Prepare must be quick, must not keep the
// ReadTx or Tx after they return, and must not call back into the Store
// (a nested read lock can deadlock behind a waiting Apply).
//
// # Apply is deterministic
//
// Every replica applies the same commands in the same order and must reach
// the same state. Apply therefore reads nothing but its arguments and the
// current state: no clock, no randomness, no map iteration order leaks into
// the result. Everything non-deterministic (IDs, timestamps) was decided by
// the proposer and is carried in the command. The checks Prepare makes early
// are repeated in Apply, which is the authority:
//
//   - A transaction applies whole or not at all; each transaction of a
//     command gets its own result.
//   - CREATE requires the object to be absent; UPDATE requires it present at
//     the version carried in meta.version; DELETE requires it present (at
//     meta.version when that is not 0).
//   - Every object applied at Raft index i gets meta.version = i, and keeps
//     the created_at it was created with.
//   - Service names are unique, checked against the state at the end of each
//     transaction (so a transaction may swap two services' names); so are
//     network, secret and config names.
//   - Apply never panics, whatever the command holds.
//
// The store does not enforce references between objects (a task's service or
// node may be absent): the orchestrator owns that cleanup.
//
// # Watches
//
// Watch and ViewAndWatch deliver every change applied after they were called,
// as Events in apply order. Apply never waits for a watcher: each has its own
// queue, and a watcher that falls more than a bounded number of events behind
// has its channel closed, as have all watchers on Restore. A closed channel
// means "your picture is stale": re-read with ViewAndWatch.
package state
