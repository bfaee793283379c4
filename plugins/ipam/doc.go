// Ipam is shoal's default IPAM plugin: it hands out network subnets, node
// slices, service virtual IPs and task addresses, IPv4 only.
//
// Each network has a subnet, the one its spec asks for or the lowest free
// block of default_prefix_len from default_pool. The subnet is cut into
// slices of node_prefix_len: the first slice holds the services' virtual
// IPs, every other slice belongs to one node, handed out on the node's first
// task on the network (lowest free slice first). In a node's slice the first
// address is the node's gateway on the network and the last is broadcast;
// tasks get the addresses between, each in CIDR form with the whole
// network's prefix length ("10.200.3.7/16"), so that a task reaches the
// other nodes' slices through its node's routes.
//
// Within a slice, addresses are handed out round-robin from after the last
// one given, not lowest first: an address that was just released is the
// last to be given again, so that a stale cache entry elsewhere (ARP, a
// peer's connection) does not reach a new task.
//
// The plugin holds nothing across restarts: the kernel records every
// allocation and replays them with Restore after each start. Requests that
// name another restore than the last one are refused, so nothing is handed
// out that the kernel's record does not account for.
//
// Settings, in the node's config ([plugins.ipam.config]; all optional,
// unknown keys are refused):
//
//	# The pool networks without a subnet of their own take theirs from.
//	# Default: "10.192.0.0/12".
//	default_pool = "10.192.0.0/12"
//	# The size of those subnets. Default: 16 (16 networks of 65,536
//	# addresses in the default pool).
//	default_prefix_len = 16
//	# The size of each node's slice, for networks whose spec leaves it
//	# unset. Default: 24 (254 addresses per node: a gateway and 253 tasks).
//	node_prefix_len = 24
package main
