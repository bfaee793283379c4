// Package allocator is the kernel's address allocation, a leader-only
// stage between the orchestrator and the dispatcher. It asks the IPAM
// plugin, in batches, for what the store says is missing: a subnet for each
// network, a virtual IP for each service on each network it joins, and an
// address for each placed task on each of its networks (from its node's
// slice of the network, which the plugin hands out on the node's first
// task). It records the answers in batched Raft writes: Network.subnet,
// node_prefix_len and node_subnets, Service.virtual_ips, Task.networks.
// The dispatcher holds a task back from its worker until every one of its
// networks has an address (Allocated).
//
// # The store is the truth
//
// An allocation counts only once it is committed. Before its first request
// to a plugin process, and again whenever the plugin answers that it holds
// another restore (it restarted), or a commit of its answers failed, the
// stage replays every recorded allocation into the plugin with Restore: the
// plugin then holds exactly what the store records, and whatever it handed
// out that was never committed is forgotten. A new leader does the same
// from its own store, which holds every committed entry (the manager runs
// the stage after a Raft barrier). Hence an address is never given twice,
// however the plugin or the leader dies.
//
// Releases follow the store too: the stage watches for recorded allocations
// leaving it (a task removed, or ended for good — see Holds; a service
// removed or leaving a network; a network removed; a node's slice dropped
// once the node is gone and nothing on it holds an address) and only then
// tells the plugin. A release lost to a crash is harmless: the next Restore
// does not carry what the store no longer holds.
//
// # Goroutines
//
// Run owns one goroutine: it reads store events, calls the plugin and
// commits, one batch at a time, so that a Restore never races an
// allocation whose commit is under way.
package allocator
