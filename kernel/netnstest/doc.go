// Package netnstest tests task networking across nodes the way it runs in
// production: real `shoal agent` processes, each node in a network
// namespace of its own with its own containerd, tasks as containers on a
// shared network, and the routes between the nodes' slices learned through
// the workers' gossip. Its tests need root (namespaces, bridges, routes,
// mounts) and skip without it or without containerd, runc and the CNI
// plugins.
//
// What runs here: tasks reaching each other across nodes by address
// (reach_test.go); by name through each node's DNS, through VIPs and the
// routing mesh, with health and task exec (services_test.go); over VXLAN to
// a node on another subnet behind a router (overlay_test.go); the README's
// compose stack on two nodes, its redeploy and removal (stack_test.go);
// and, for
// make bench only, the figures of service discovery
// (discovery_figures_test.go).
//
// The lab is a "LAN" namespace holding a bridge, and one namespace per
// node, joined to the bridge by a veth pair, on 192.168.251.0/24; a second
// LAN (192.168.252.0/24) behind a router namespace when a test needs
// nodes that share no segment. Nothing
// is set up in the host's own namespace: the nodes' bridges, routes and
// iptables rules live and die with their namespaces. The nodes' processes
// run under nsenter (network namespace only), so their mounts (containers'
// root filesystems, the tasks' namespace files) are in the host's mount
// namespace, under the test's directory, where the cleanup finds them.
//
// Its non-test code is the namespace kit that the kernel packages' own
// tests share (kernel/dns, kernel/lb, kernel/tasknet): NewNS, an anonymous
// namespace held by a handle; Do and DoAt, to run code inside one; Serve,
// an accept loop that ends with the test.
package netnstest
