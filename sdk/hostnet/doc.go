// Package hostnet is the plumbing of a Linux host's network stack that both
// sides of shoal's task networks change: the executor, which attaches tasks
// (sdk/netattach), and the node, which routes between nodes (the kernel).
// Both run as root in the node's network namespace.
//
//   - Network namespaces kept by a bind mount, as `ip netns add` makes them
//     (CreateNetns, IsNetns, RemoveNetns).
//   - IPv4 forwarding, which routing between bridges and links needs
//     (EnableForwarding).
//   - The iptables binary, run as the CNI plugins run it: rules checked
//     before they are added, shoal's chains jumped to once from a built-in
//     chain (Iptables).
//   - Validation of the IPv4 networks in specs and peers (ParseIPv4Prefix).
package hostnet
