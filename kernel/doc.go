// Package kernel is the map of shoal's kernel: the small core that owns the
// cluster state and the protocol with workers. Each concern is one package
// below it; none of them imports another's internals, and kernel/manager
// wires them by hand.
//
//	config        the node's TOML config: strict decoding, defaults, validation
//	state         the whole cluster state in memory, indexed; Prepare/Apply of
//	              Raft commands, deterministic; View and ViewAndWatch
//	raftstore     hashicorp/raft over raft-wal: the FSM over state, snapshots,
//	              the batched proposer, membership, the mutual-TLS transport
//	ca            root CA, join tokens, node certificates, renewal, and the
//	              role policy every gRPC server applies to its callers
//	controlapi    the control API: validation, defaults, follower-to-leader
//	              forwarding
//	orchestrator  leader stage: services into tasks, in batched writes
//	manager       wiring: identity (bootstrap or join), Raft, the API servers,
//	              membership, and the leader-only stages under one context
//	              that is cancelled when leadership is lost
//	clustertest   a kit that starts real manager processes for tests and
//	              benchmarks
//	ids           object IDs
//
// The path of every change: a control API call is validated, written through
// raftstore (which packs concurrent writers into few log entries), applied by
// every manager to its state, and seen by the leader's stages through state
// watches; they write their own changes back the same way.
package kernel
