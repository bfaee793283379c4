// Package gossip shares network endpoints between workers, peer to peer,
// with hashicorp/memberlist: which task has which address on which network
// on which node, and which slice of each network each node serves (for the
// host routes of kernel/tasknet). Managers are not members.
//
// # Records
//
// Each member publishes its own record: its endpoints (Publish, the whole
// set each time), its slices (PublishSlices) and the MAC address of its
// VXLAN tunnel endpoint (Config.VTEPMAC), which the nodes that reach its
// slices over kernel/tasknet's overlay map to its address. A record is a
// set of entries, one per endpoint plus a head holding the slices and the
// MAC, each versioned by the member's epoch (its start time) and a
// sequence number it increments:
//
//   - a newer epoch replaces everything of older epochs, so a restarted
//     member's record replaces its old one whole;
//   - within an epoch, per entry, the higher sequence number wins; a removed
//     endpoint is a tombstone, kept five minutes;
//   - the endpoints of a member that leaves or is found dead disappear at
//     once; its record is kept hidden for five minutes, so a member wrongly
//     declared dead comes back without older copies overriding newer ones;
//   - a member that sees one of its own endpoints alive elsewhere after
//     forgetting its tombstone deletes it again.
//
// # Transport
//
// A change is broadcast at once, piggybacked on memberlist's gossip rounds
// (every 100 ms, to 3 random members), and every member that learns
// something new passes it on: a change reaches N members in about log3(N)
// rounds (50 members: p50 0.3 s, worst 1 s, BenchmarkEndpointPropagation50).
// memberlist's push/pull (every 30 s, and on join) exchanges full states
// and repairs whatever a member missed. Endpoints from a member not yet
// known alive wait until it is.
//
// Messages are a type byte and JSON; entries from the network are
// validated like any other input. With Config.SecretKey every packet is
// encrypted and authenticated (AES-GCM, memberlist's keyring); without it,
// anyone who can reach the port can publish endpoints.
//
// OnChange runs on memberlist's goroutines and must not block; Endpoints,
// Lookup and Peers are cheap reads of the merged view.
package gossip
