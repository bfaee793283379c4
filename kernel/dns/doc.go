// Package dns is a node's DNS server for the tasks it runs (docs/DESIGN.md,
// "Services that find each other"): it answers the cluster's names per
// network from an in-memory Index and forwards other names to the node's
// own resolvers. It is built on github.com/miekg/dns, the library CoreDNS
// is built on, and has CoreDNS's shape: one handler, ServeDNS, that
// answers from the index or hands the query to a forwarder with its own
// timeouts.
//
// # Names
//
// On each network, the Index answers:
//
//   - SERVICE: the service's VIP on the network (endpoint mode vip, the
//     default), or the addresses of its backends (mode dnsrr, or a vip
//     service whose VIP is not known yet);
//   - a service's network alias: as the service's name;
//   - tasks.SERVICE: the addresses of the service's backends;
//   - a task's network alias: the addresses of the backends carrying it;
//   - a task's name, web.1 and web.1.TASKID: the task's address, while the
//     task is in the index, healthy or not (for looking at one task).
//
// A backend is a task whose Task.Backend is true: running and healthy. An
// update of the index is a few map operations under a lock and is seen by
// the next query; answers have TTL 0 and negative answers carry no SOA, so
// no resolver caches them: a task that dies or fails its health check is
// gone from the answers as soon as its owner updates the index.
//
// A query is answered only with the names of the querying task's own
// networks: the server takes the query's source address, finds the tasks
// with that address in the index and answers from all their networks (a
// task on several networks sees the names of all of them; a name on more
// than one gives the addresses of each, once). A name that is on other
// networks only is NXDOMAIN, and is not forwarded. So is a client whose
// address is not in the index: the node adds a task's endpoints before the
// task starts. Names are compared in ASCII lower case, with or without the
// final dot.
//
// Resolvers append the search domains of resolv.conf (the host's, copied
// into each task's) before trying a short name as it is: when a name is
// not one of the index, the server also tries it without each of the
// host's search domains, and answers redis.example.com (with the owner
// name as asked) when redis is on the client's networks and example.com is
// a search domain. On the client's networks the cluster's name wins over a
// same name in the search domain; a name that is the cluster's only on
// other networks is forwarded whole, as the host would resolve it.
//
// Types: A and AAAA (and ANY, both) from the addresses' families; a name of
// the index asked for another type, or for AAAA with only IPv4 addresses,
// is NOERROR with no answer. Multiple addresses come in random order for
// each query, as swarm mode does for dnsrr and tasks.; with TTL 0 a client
// picks afresh each time.
//
// # Forwarding
//
// Names that are not the index's go to the host's resolvers
// (/etc/resolv.conf, re-read when it changes): each nameserver in turn,
// options attempts:N rounds, the whole within Config.ForwardTimeout
// (default: the host's options timeout:N, so that the task's resolver,
// which copies that timeout, gets SERVFAIL before it gives up), each try
// getting an equal part of it. SERVFAIL, REFUSED and NOTIMP go on to the
// next try; no answer within the time is SERVFAIL. A truncated answer is
// asked again over TCP. Not forwarded: single-label names (no public name
// is one; resolvers try the search domains for them) and names of other
// networks, which are NXDOMAIN, and zone transfers (REFUSED).
//
// # Bounds
//
// A query is at most 512 bytes over UDP and TCP (a larger TCP one closes
// the connection); one with no question is FORMERR and only the first of
// several questions is answered; names are at most 255 bytes (miekg/dns
// refuses longer ones). Answers over UDP are at most 512 bytes, or the
// client's EDNS size up to 1,232, and truncated past it (the TC bit) so
// that the client asks again over TCP (64 KiB); a name with more addresses
// than 1,232 bytes hold (77) gets that many, picked at random, before the
// truncation. Answers read from the
// host's resolvers are at most 4,096 bytes over UDP. At most
// Config.MaxForwards queries are forwarded at once (past that: SERVFAIL at
// once) and Config.MaxTCPConns TCP connections are open per address, on
// at most 1,024 addresses; the index takes names of at most 253 characters
// and 64 aliases.
//
// # Goroutines
//
// The server listens on addresses, each over UDP and TCP: on a node, the
// gateway of each network's bridge that has tasks on the node, port 53,
// which the tasks' namespaces reach (a task's resolv.conf names its first
// network's). New binds Config.Addrs, if any (none is fine), and SetAddrs
// makes the addresses exactly those it is given, at any time, as networks
// come to the node and leave it: it binds the new ones and closes the
// others; the ones kept are not touched, so no query on them is lost.
//
// Addresses are bound with IP_FREEBIND: one that is on no interface yet
// binds all the same, and receives whenever it is up (from when it comes
// up, and again if it goes away and comes back). The executor
// plugin puts a network's gateway address on the bridge when it attaches
// the network's first task on the node, which may come before or after the
// node decides to listen there; without the option, binding would fail
// in between, and the node would have to watch the bridge and try again.
// The price: an address that never comes up (a wrong one) is not an error,
// the server just gets no query there. An address in use still is one.
//
// Run owns every goroutine: per address, miekg/dns's two servers, which
// start one goroutine per UDP query and one per TCP connection; and the
// watcher of /etc/resolv.conf. SetAddrs starts the servers of an address
// it adds while Run runs (in Run's goroutines), and has stopped those of an
// address it removes when it returns: that address's forwards in flight
// cancelled, its sockets closed and its goroutines exited. When Run's
// context is cancelled, SetAddrs fails from then on, and Run cancels the
// forwards in flight, shuts every server down and returns after all of its
// goroutines have exited. The Index has no goroutine; its owner (the node)
// updates it from what it learns: its own assignments and the workers'
// gossip.
//
// ResolvConf and Hosts render a task's /etc/resolv.conf (this server at the
// gateway of the task's first network, the host's search domains and
// options) and /etc/hosts (the localhost lines, the task's own names and
// address).
package dns
