// Package netattach attaches a task to the cluster's networks on a Linux
// node, for an executor plugin: a network namespace per task, wired with
// Debian's CNI plugins through libcni. Start with New and Manager.Attach;
// the namespace's path goes into the task's container (or VM) spec, and
// Manager.Detach undoes it all when the task is removed.
//
// It is in the SDK because an executor may import only the SDK, and every
// executor that puts tasks on shoal networks must wire them exactly so:
// the node routes to them, answers their DNS and balances their services'
// VIPs on the strength of this layout (the kernel's tasknet, dns and lb
// packages), so a second implementation would have to match it line for
// line. The node's own part, the routes to other nodes' slices and the
// VXLAN overlay, stays in the kernel.
//
// # Layout
//
// A network has a subnet (10.200.0.0/16); each node owns a slice of it
// (10.200.3.0/24) whose first address is the node's gateway (10.200.3.1).
// On a node, a network is one Linux bridge, BridgeName(networkID), holding
// the gateway address with the slice's prefix (10.200.3.1/24). A task's
// interface (eth0, eth1, ... in the order of its networks) gets its address
// with the slice's prefix too (10.200.3.7/24): tasks of the slice are
// on-link, every other address of the network goes to the gateway (the
// first network carries the task's default route, the others a route for
// their subnet), where the node routes it.
//
// Per network on the node, iptables rules (chains SHOAL-FORWARD and
// SHOAL-POSTROUTING) accept its traffic through FORWARD, also on hosts
// whose policy is DROP, and masquerade what leaves its subnet from this
// node's slice. Published ports (host mode) are the portmap plugin on the
// first network: node:published_port is DNATed to the task's
// address:target_port.
//
// Only IPv4 networks are supported.
//
// # State
//
// StateDir/netns/<task> are the namespaces (bind mounts, as `ip netns add`
// makes); StateDir/tasks/<task>.json records what Attach did, written
// before it starts and marked complete at the end, so Detach and a retried
// Attach work after a crash or restart; StateDir/cni is libcni's cache of
// results. A network's bridge and firewall rules are removed when its last
// task on the node is detached.
//
// The Manager runs the CNI plugins and iptables as child processes: all of
// it applies to the network namespace the process is in, which must be the
// node's. One Manager per network namespace.
package netattach
