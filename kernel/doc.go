// Package kernel is the map of shoal's kernel: the small core that owns the
// cluster state and the protocol with workers. Each concern is one package
// below it; none of them imports another's internals, and kernel/manager
// wires them by hand.
//
//	config        the node's TOML config: strict decoding, defaults, validation
//	state         the whole cluster state in memory, indexed; Prepare/Apply of
//	              Raft commands, deterministic; View and ViewAndWatch
//	raftstore     hashicorp/raft over raft-wal: the FSM over state, snapshots,
//	              the batched proposer, membership, the mutual-TLS transport;
//	              the read barrier (a barrier entry per round of reads)
//	              and writes applied once per request ID
//	ca            root CA, join tokens, node certificates, renewal, and the
//	              role policy every gRPC server applies to its callers
//	controlapi    the control API: validation and limits, defaults,
//	              follower-to-leader forwarding, linearizable reads, request
//	              IDs, task logs and exec through the leader
//	orchestrator  leader stage: services into tasks, in batched writes
//	placement     leader stage: pending tasks to the scheduler plugin in
//	              batches, with the node view as changes; decisions committed
//	allocator     leader stage: subnets, service VIPs and task addresses from
//	              the IPAM plugin in batches; replays the store's allocations
//	              into the plugin before any new request
//	presence      heartbeat deadlines in one heap, a one-timer loop
//	events        every manager: events (service scaled, task failed, node
//	              down) derived from its store's watch, the recent ones kept
//	              for replay; the Events stream of `shoal events`
//	dispatch      leader stage: worker sessions, assignment sets streamed as
//	              batched changes, status reports batched into writes; on
//	              followers, one relay stream carrying all their workers
//	pluginhost    launches and supervises go-plugin plugins
//	agent         the worker side: sessions, heartbeats, reconciling the
//	              assignment set against an executor, status reports
//	simexec       an in-memory executor (tests, simulations, benchmarks)
//	containerd    supervises the node's own containerd when none is configured
//	tasknet       routes to other nodes' slices of a network, plain or over
//	              the VXLAN overlay (tasks are attached by the executor
//	              plugin, with sdk/netattach)
//	gossip        workers share task endpoints and slices peer to peer
//	              (memberlist); managers stay out
//	dns           a node's DNS server for its tasks: names per network from
//	              an in-memory index, the rest forwarded
//	lb            a node's VIPs and published ports in one nftables table,
//	              replaced in one transaction per sync
//	dashboard     the web dashboard on the metrics listener: embedded page,
//	              state snapshot and live changes from the event hub, logs
//	              and write actions through the control API, token access
//	manager       wiring: identity (bootstrap or join), Raft, the API servers,
//	              membership, and the leader-only stages under one context
//	              that is cancelled when leadership is lost
//	node          what a node's config asks for: a manager and its worker, or
//	              a worker; the executor plugin and the node's containerd;
//	              the worker's gossip and its routes to other nodes' tasks;
//	              its DNS and load balancing, fed from the gossiped endpoints
//	clustertest   a kit that starts real manager processes and simulated
//	              workers for tests and benchmarks; the linearizability
//	              check under leader kills, pauses and partitions
//	e2etest       a real one-node cluster with real containers: restarts and
//	              exit codes, logs, plugin and agent kills, image pulls;
//	              create-to-running benchmarks (root)
//	netnstest     nodes as real agents in network namespaces of their own,
//	              with containers reaching each other across nodes (root)
//	hclogslog     hclog (raft, go-plugin) into slog
//	ids           object IDs
//	streams       a gRPC stream's opening message within a deadline; a
//	              stream relayed to another server, both ways
//
// The path of every change: a control API call is validated, written through
// raftstore (which packs concurrent writers into few log entries), applied by
// every manager to its state, and seen by the leader's stages through state
// watches; they write their own changes back the same way.
package kernel
