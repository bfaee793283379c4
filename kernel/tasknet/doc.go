// Package tasknet puts a node's tasks on the cluster's networks: a network
// namespace per task, wired with Debian's CNI plugins through libcni, and
// host routes to the other nodes' slices of each network.
//
// # Addressing
//
// A network has a subnet (10.200.0.0/16); each node owns a slice of it
// (10.200.3.0/24) whose first address is the node's gateway (10.200.3.1). On
// a node, a network is one Linux bridge, "sh-" plus the first 12 characters
// of the network ID, holding the gateway address with the slice's prefix
// (10.200.3.1/24). A task's interface (eth0, eth1, ... in the order of its
// networks) gets its address with the slice's prefix too (10.200.3.7/24),
// not the network's (/16):
//
//   - tasks of the same slice are on-link: they talk over the bridge;
//   - every other address of the network is off-link to the task: it goes
//     to the gateway (the first network carries the task's default route,
//     the others a route for their subnet), and the host routes it;
//   - the host routes each other node's slice to that node
//     ("10.200.5.0/24 via 192.168.1.12", installed by SetPeers), which
//     delivers it on its own bridge.
//
// Had the task the network's /16 on its interface, it would ARP on the
// bridge for tasks of other nodes, which only works with proxy ARP on
// every bridge; routing through the gateway keeps every hop plain L3.
//
// Between nodes this is routing, not encapsulation: the peers' node
// addresses must be on a link the node shares with them (one L2 segment),
// which is how routes "via" a next hop work. Nodes behind different routers
// would need VXLAN; SetPeers reports a peer it cannot route to. Packets
// between slices keep the tasks' addresses; traffic from a slice to outside
// the network's subnet is masqueraded (see firewall.go), and FORWARD rules
// let the overlay through on hosts whose FORWARD policy is DROP.
//
// A worker learns the other nodes' slices from kernel/gossip: each
// gossip.PeerInfo's address and slices become Peers (one per slice) for
// SetPeers, called again whenever gossip reports a change.
//
// Published ports (host mode) are the portmap plugin on the first network:
// node:published_port is DNATed to the task's address:target_port.
//
// Only IPv4 networks are supported.
//
// # State
//
// StateDir/netns/<task> are the namespaces (bind mounts, as `ip netns add`
// makes); StateDir/tasks/<task>.json records what Attach did, written before
// it starts and marked complete at the end, so Detach and a retried Attach
// work after a crash or restart; StateDir/cni is libcni's cache of results.
// Host routes are tagged with their own routing protocol number, so the
// kernel is their record. A network's bridge, routes and firewall rules are
// removed when its last task on the node is detached.
//
// The Manager runs the CNI plugins and iptables as child processes and
// changes routes with netlink: all of it applies to the network namespace
// the process is in, which is the node's. One Manager per network
// namespace: nodes simulated on one host each need their own (the tests
// run each node's Manager in a namespace of its own).
package tasknet
