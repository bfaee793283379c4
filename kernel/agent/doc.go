// Package agent is the worker side of a node (`shoal agent`): it holds a
// session with a manager (sdk/proto/shoal/worker/v1), runs the tasks
// assigned to the node on an Executor, and reports their status.
//
// Pull model: the agent dials a manager and never listens. It picks one at
// random by weight from the latest manager list the cluster sent (a manager
// of weight 0 is never picked), at first from the configured addresses and
// the list saved in the state directory. When a session fails it waits
// (exponential backoff with full jitter, 100ms to 5s, starting over after a
// session that lasted 10s) and tries another manager.
//
// A session is one Connect stream: Hello, then a heartbeat right away and
// one more each time the period of the previous reply has passed; a session
// whose reply does not come within three periods (and at least 15s, to wait
// out a leader election) is given up. The manager
// sends the whole assignment set first, then changes. Status reports are
// batched (up to 100 updates, or 100ms), and every session starts by
// sending the latest status of every task the agent knows, so that a new
// leader is in sync at once.
//
// Tasks: each task has a worker, a small state machine that drives the
// executor (Prepare, Start, Wait, Stop, Remove) towards the task's desired
// state and reports the states it reaches, in order, never going back. A
// task runs only while its desired state is RUNNING; any other desired state
// stops it, or keeps it from starting. The executor owns the tasks: they
// keep running when the agent stops or loses its manager, and an agent that
// starts adopts the tasks the executor still runs instead of starting them
// again, once the assignment set names them, and removes those it does not
// name.
//
// Task logs: the manager asks for the logs of some of the node's tasks
// over the session (a LogSubscription); the agent reads them from the
// executor and sends them back in small batches, only while the manager
// gives it credit, so that logs never crowd out heartbeats (logs.go).
//
// Goroutines: Run owns all of them and returns after they exit. A session
// has one receiver, one heartbeat loop and one status sender, and per log
// subscription one reader per task and one sender, which end with it. A
// task's worker has a goroutine only while it has something to do or waits
// for the task's process, so an idle node with many ended tasks costs
// little.
package agent
