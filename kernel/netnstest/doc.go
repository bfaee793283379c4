// Package netnstest tests task networking across nodes the way it runs in
// production: real `shoal agent` processes, each node in a network
// namespace of its own with its own containerd, tasks as containers on a
// shared network, and the routes between the nodes' slices learned through
// the workers' gossip. Its tests need root (namespaces, bridges, routes,
// mounts) and skip without it or without containerd, runc and the CNI
// plugins.
//
// The lab is a "LAN" namespace holding a bridge, and one namespace per
// node, joined to the bridge by a veth pair, on 192.168.251.0/24. Nothing
// is set up in the host's own namespace: the nodes' bridges, routes and
// iptables rules live and die with their namespaces. The nodes' processes
// run under nsenter (network namespace only), so their mounts (containers'
// root filesystems, the tasks' namespace files) are in the host's mount
// namespace, under the test's directory, where the cleanup finds them.
package netnstest
