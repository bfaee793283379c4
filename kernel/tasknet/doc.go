// Package tasknet is the node's side of the cluster's task networks: host
// routes to the other nodes' slices of each network, plain or over the
// VXLAN overlay (Router). The tasks themselves are attached by the
// executor plugin, with sdk/netattach (a network namespace per task, wired
// with Debian's CNI plugins: the bridge, the task's address, its routes
// to the gateway, the published ports, the network's FORWARD and NAT
// rules); this package routes between the bridges of different nodes.
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
//   - the host routes each other node's slice to that node (installed by
//     Router.Set), which delivers it on its own bridge.
//
// Had the task the network's /16 on its interface, it would ARP on the
// bridge for tasks of other nodes, which only works with proxy ARP on
// every bridge; routing through the gateway keeps every hop plain L3.
//
// # Between nodes
//
// Per peer node, the route to its slices is chosen from how the kernel
// reaches the peer's node address (its gossip address), asked again at
// every sync:
//
//   - on-link (the route to it has no gateway: the nodes share an L2
//     segment): plain routing, "10.200.5.0/24 via 192.168.1.12". Packets
//     keep the tasks' addresses and cost nothing extra.
//   - through a router: VXLAN, as flannel's vxlan backend does it.
//
// The node has one VXLAN device for every network, "shoal.vx" (VNI 4000,
// UDP port 4789, source learning off, local address the node's own
// underlay address, the one it gossips from), with a MAC of its own, its
// VTEP MAC, derived from the node ID so it survives restarts and published
// in gossip. For each peer slice reached over VXLAN the host gets
//
//	route      10.200.5.0/24 via 10.200.5.0 dev shoal.vx onlink
//	neighbour  10.200.5.0 lladdr <peer's VTEP MAC> dev shoal.vx permanent
//	FDB        <peer's VTEP MAC> dst <peer's node address> dev shoal.vx self permanent
//
// The next hop is the peer slice's network address, which no task has (as
// flannel uses each node's subnet address): a neighbour entry per slice,
// an FDB entry per peer node. The device has this node's corresponding
// address on each network, 10.200.3.0/16 (its slice's network address with
// the network's prefix length, no prefix route), so that the host's own
// packets into the overlay, and the routing mesh's masqueraded ones, leave
// from an address the peers route back through the overlay (rp_filter
// passes them) and whose FORWARD rules accept it like a task's.
//
// Each node decides for itself; two nodes agree when they see each other
// alike (one subnet, or routed both ways), as nodes with consistent
// netmasks do. A pair that disagrees (netmasks that differ on one segment)
// does not work: one end sends VXLAN to a node with no device, or no INPUT
// rule, for it.
//
// A peer whose address is this node's own, or unrouted, or inside a
// network's subnet, is reported and not routed; so is one needing VXLAN
// without a VTEP MAC (an older version), or with this node's or another
// peer's. The device's MTU is the underlay link's less 50 (outer IPv4, UDP,
// VXLAN and inner Ethernet headers). The tasks' interfaces and bridges
// keep 1500: lowering them would split a bridge between tasks attached
// before and after (a veth drops frames above its own MTU) and take 50
// bytes from every packet, also to peers on the link. A packet above 1450
// bytes bound for a VXLAN peer is fragmented by the node when it may be
// (DF clear), or, with DF set (TCP), answered by the node with ICMP
// "fragmentation needed, MTU 1450": the task's kernel then keeps the lower
// path MTU for that destination and sends smaller segments, one round trip
// later. That ICMP comes from the task's own gateway, which nothing
// filters; a task that drops ICMP itself gets stuck on large packets to
// VXLAN peers (as behind any link of a smaller MTU).
//
// The overlay's entries are keyed by what they map, so every sync (and the
// periodic one) brings them in line: missing or changed ones are set, and
// those of peers that left are deleted after their routes; the device goes
// when no peer needs it (and its entries with it). The VXLAN port is open
// in filter INPUT to the overlay's peers only (firewall.go): VXLAN is
// neither authenticated nor encrypted, so the nodes' underlay between
// subnets must be trusted, or the overlay kept off untrusted networks.
//
// Packets between slices keep the tasks' addresses; traffic from a slice
// to outside the network's subnet is masqueraded, and FORWARD rules let
// the overlay through on hosts whose FORWARD policy is DROP (both kept by
// sdk/netattach, per network).
//
// A worker learns the other nodes' slices from kernel/gossip: each
// gossip.PeerInfo's address, slices and VTEP MAC become Peers (one per
// slice) for Router.Set, called again whenever gossip reports a change and
// every 30 s.
//
// Only IPv4 networks are supported.
//
// # State
//
// Host routes are tagged with their own routing protocol number, so the
// kernel is their record; the VXLAN device, with its entries, is
// tasknet's by its name. A network's routes go when the node no longer has
// tasks on it (Router.Set without it in locals); its bridge and firewall
// rules go with its last task (sdk/netattach).
//
// The Router changes routes with netlink and runs iptables as a child
// process: all of it applies to the network namespace the process is in,
// which is the node's. One Router per network namespace: nodes simulated
// on one host each need their own (the tests run each node's Router, and
// its executor's netattach.Manager, in a namespace of its own).
package tasknet
