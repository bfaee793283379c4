// Scheduler-spread is shoal's default scheduler plugin. It places each task
// on a node that meets all of its constraints, has its reservations free and
// is under its max_replicas_per_node, and among those prefers, in order:
//
//  1. following the placement preferences: for the first, the group of nodes
//     sharing one value of the attribute (a label's value, say a rack) that
//     runs fewest tasks of the service; within it the same for the second
//     preference, and so on. Nodes without the label form a group of their
//     own. Only the nodes that meet the constraints count.
//  2. the node running fewest tasks of the service (see spread_over_hosts);
//  3. the node running fewest tasks, then the one with the smallest reserved
//     share (the larger of its CPU and memory shares);
//  4. the node whose ID sorts first, so that the same request always gets
//     the same answer.
//
// Tasks are decided in the order of the request, each seeing the
// placements before it. A node takes a task that reserves CPU or memory only
// if it reports a total of that resource and total - reserved - placed in
// the batch covers the reservation. Constraints are the SDK's language
// (scheduler.ParseConstraint): values compare exactly, except
// node.hostname, which ignores ASCII case as DNS names do; a node without
// a label differs from every value (node.labels.rack!=r1 holds on it).
//
// A refused task's reason names the filter that left no node:
//
//	no suitable node: constraint node.labels.rack==r9 matched 0 of 12 nodes
//	no suitable node: insufficient memory on 12 nodes
//	no suitable node: max_replicas_per_node (2) reached on 3 nodes, insufficient CPU on 2 nodes (5 of 12 nodes meet the constraints)
//
// The plugin keeps its copy of the node view in a scheduler.View, which
// applies each request's changes; a request on another view version fails
// with FailedPrecondition and the kernel sends the whole view again. The
// batch's own bookkeeping (free resources, task counts, the trees below) is
// the plugin's, for speed.
//
// Settings, in the node's config ([plugins.scheduler.config]; all optional,
// unknown keys are refused):
//
//	# Rank the nodes that run fewest tasks of the task's service first,
//	# after the placement preferences, so that replicas land on different
//	# nodes. With false, only the nodes' whole load counts. Default: true.
//	spread_over_hosts = true
//
// A batch costs about O(nodes) per class of tasks (same service, placement
// and reservations) plus O(log nodes) per task and live class: the nodes
// meeting a list of constraints are found once per batch, and each class
// keeps its nodes in a tree of heaps that a placement updates, instead of
// ranking every node for every task. On 2 cores, 10,000 tasks of one service
// on 5,000 nodes take a few tens of milliseconds in process (bench_test.go).
package main
