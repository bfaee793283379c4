// Package lb keeps a node's service load balancing in nftables: connections
// to a service's VIP, on its ports and on every other port, and to its
// published ports on any address of the node (the routing mesh), go to one
// of the service's backends anywhere in the cluster. This kernel has no IPVS; kube-proxy moved to nftables too,
// and this package follows its nftables proxier. It talks to the kernel
// through github.com/google/nftables (netlink, no nft binary), as issue 12
// chose.
//
// Which VIPs, ports and backends a node has (from its assignments, gossip
// and health checks) is the caller's business: it hands the whole desired
// state to Sync each time something changes.
//
// # What it owns
//
// One table, `ip shoal` (Config.Table), and nothing else in the ruleset.
// Every Sync computes the table's whole content from the desired state and
// applies it in one netlink batch, which the kernel commits atomically:
// delete the table and make it again, never rule by rule. A packet sees the
// old table or the new one. A Sync with bad input (bounds: Config's
// MaxServices, MaxPorts per service, MaxBackends per port and per
// service's Backends) fails before anything is sent, naming every bad
// field; a batch the kernel refuses changes nothing either. Close removes
// the table.
//
// Besides the table, one sysctl: net.ipv4.conf.all.route_localnet is set to
// 1 after the first Sync (unless Config.NoLocalhost), and put back as it
// was by Close. A connection to 127.0.0.1:published is DNATed in output to
// a backend on a bridge or another node; the kernel drops a packet from
// 127.0.0.1 that would leave by any interface but lo, and a reply to
// 127.0.0.1 arriving on one, unless route_localnet is on (tested: without
// it such connections time out). It is the same trade kube-proxy's
// iptables mode makes, with the same guard against CVE-2020-8558 (chain
// localnet): a new connection to 127/8 that comes in by any interface but
// lo and was not DNATed is dropped, so services bound to localhost stay
// unreachable from the node's neighbours.
//
// # The rules
//
//	prerouting, output (nat, dstnat)  jump services
//	services   ip daddr . meta l4proto . th dport vmap @vips
//	           ip daddr . meta l4proto vmap @vips-any
//	           fib daddr type local meta l4proto . th dport vmap @published
//	svc-NAME-PROTO-PORT   ip saddr 127.0.0.0/8 mark; dnat ip to numgen random mod N map @be-NAME-PROTO-PORT
//	                      (reject, ICMP port unreachable, when there are no backends)
//	vip-NAME   ip saddr 127.0.0.0/8 mark; dnat ip to numgen random mod N map @vip-be-NAME
//	           (without Backends: meta l4proto tcp reject with tcp reset; reject)
//	mesh-NAME-PROTO-PUBLISHED   mark; goto svc-NAME-PROTO-PORT
//	hairpin    (filter, prerouting, dstnat+1)  ct state new ct status dnat fib daddr . iif oif != 0 mark
//	postrouting (nat, srcnat)  marked: clear the mark, masquerade
//
// prerouting sees connections from the tasks (through their bridge) and
// from other hosts; output sees the node's own. A large service costs one
// lookup in vips, one numgen and one lookup in its backend map, whatever
// its size; on a port outside Ports, one lookup more, in vips-any.
//
// A VIP forwards every port, as swarm mode's do (IPVS fwmark services): a
// connection to VIP:6379 reaches a backend on 6379 though the service
// declares no such port: a service need not declare the ports its tasks
// listen on to be reached on them. vips-any maps a VIP and a protocol, TCP or UDP, to its
// service's chain, vip-NAME, whose backend map holds addresses only: the
// DNAT leaves the port as it is. Its lookup comes after the exact one in
// vips, whose goto leaves the chain, so a port in Ports keeps its own
// mapping (another target port, other backends, or none: refused).
// Either map is one hash lookup, whatever the number of services. A VIP
// is therefore one service's: two services with the same VIP is an error.
//
// A VIP without Backends refuses its other ports rather than letting them
// out by the default route, which knows nothing of VIPs: TCP with a reset,
// UDP with ICMP port unreachable. Not ICMP for TCP: the kernel sends a
// client at most 6 ICMP errors at once, then 1/s, and the ICMP redirects
// it sends a client whose connections hairpin (below) spend the same
// budget, so the refusal would often wait for a SYN retransmit (tested).
// UDP has only ICMP: a client out of budget waits for its own timeout, as
// at a host's closed port. The node's own datagrams are dropped on their
// way out: the send fails (EPERM).
//
// Backends are chosen with numgen random, as kube-proxy does: no counter
// to share between CPUs, and no skew toward the first backends when
// frequent Syncs restart a round-robin counter. The spread is even on
// average. A connection keeps its backend for its life: conntrack holds
// the NAT from its first packet, so a Sync changes only where new
// connections go, and a removed backend gets no new ones.
//
// Masquerade, decided by one packet mark bit (Config.Mark), cleared when
// used, the same on a VIP's ports and on its other ports:
//   - the routing mesh, always (as swarm's ingress): a backend on another
//     node would answer a remote client by its own default route; mode=host
//     publishing (kernel/tasknet) keeps client addresses;
//   - hairpin: after DNAT, the route to the backend leaves by the interface
//     the connection came in on (a client on the bridge of the chosen
//     backend): the backend would answer the client directly over the
//     bridge, past the conntrack that undoes the DNAT. br_netfilter would
//     hide this; the rules do not rely on it;
//   - a source in 127/8, which cannot leave the node.
//
// Other VIP connections keep the client's address: a backend on another
// node answers through the client's slice route, back through this node.
//
// The node's own connections to a VIP need a route to it (the default
// route will do) to pick a source address before output's DNAT.
//
// Only IPv4, TCP and UDP. One Balancer per network namespace; Config.NetNS
// points it at another namespace than the process's (the tests keep each
// simulated node in its own).
package lb
