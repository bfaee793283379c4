// Package netfiles renders the name-resolution files of a task attached to
// shoal networks (docs/DESIGN.md, "Services that find each other"): its
// /etc/resolv.conf and /etc/hosts. Executors, which may import only the
// sdk, write them for each task with networks; tasks without networks
// share the node's network and keep the node's files.
//
// The node runs a DNS server on the gateway of each network's bridge (port
// 53) that answers the cluster's names on the querying task's networks and
// forwards the others to the node's own resolvers. A task's resolv.conf
// names that server at the gateway of its first network, with the host's
// search domains and options (ResolvConf); its hosts file has the
// localhost lines and, for its address on each network, its hostname and
// its task names (TaskNames) (Hosts). TaskFiles renders both from a task.
//
// The host's configuration is read with ReadHostConfig, from
// DefaultResolvConf, parsed as the C library parses it (ParseHostConfig),
// within its bounds: 3 nameservers, 32 search domains, 64 KiB.
package netfiles
