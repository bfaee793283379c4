package tasknet

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/hostnet"
)

// Peer is another node's slice of a network: the tasks of NetworkID with
// addresses in NodeSubnet run on the node reached at NodeAddr.
type Peer struct {
	NodeID string
	// NodeAddr is the host IP other nodes reach the node at, e.g.
	// "192.168.1.12": the next hop of its slices when it is on a link this
	// node shares, the destination of their VXLAN packets otherwise (see
	// doc.go).
	NodeAddr  string
	NetworkID string
	// NodeSubnet is the node's slice of the network, e.g. "10.200.5.0/24".
	NodeSubnet string
	// VTEPMAC is the MAC of the node's VXLAN device, e.g.
	// "0a:1b:2c:3d:4e:5f" (gossip.PeerInfo.VTEPMAC): needed only when the
	// node is not on a shared link. Empty for none.
	VTEPMAC string
}

// Bounds on the input of Router.Set: well above a cluster's
// (1,000 nodes with a slice of each of 64 networks), well below what would
// make one call hold the kernel's tables for long. Over a bound, nothing
// is changed.
const (
	maxPeers  = 1 << 16
	maxLocals = 4096
)

// routeProtocol tags the host routes tasknet owns (rtm_protocol), so it finds
// them in the kernel after a restart and never touches anyone else's. 115 is
// not in iproute2's rt_protos nor used by the common routing daemons.
const routeProtocol netlink.RouteProtocol = 115

// peerRoute is a validated Peer.
type peerRoute struct {
	nodeID    string
	networkID string
	via       netip.Addr
	dst       netip.Prefix
	mac       net.HardwareAddr // nil when the peer gave none
}

// validatePeers checks peers and returns the valid ones in a deterministic
// order, with an error naming each one skipped.
func validatePeers(peers []Peer) ([]peerRoute, error) {
	var fe sdk.FieldErrors
	valid := make([]peerRoute, 0, len(peers))
	for i, p := range peers {
		f := fmt.Sprintf("peers[%d]", i)
		before := len(fe)
		if p.NodeID == "" {
			fe.Add(f+".node_id", "is required")
		}
		if p.NetworkID == "" {
			fe.Add(f+".network_id", "is required")
		}
		via, err := netip.ParseAddr(p.NodeAddr)
		switch {
		case err != nil:
			fe.Add(f+".node_addr", "%q is not an IP address", p.NodeAddr)
		case !via.Is4():
			fe.Add(f+".node_addr", "%s is not IPv4: only IPv4 networks are supported", via)
		case via.IsUnspecified() || via.IsLoopback() || via.IsMulticast():
			fe.Add(f+".node_addr", "%s is not an address another node can be reached at", via)
		}
		dst, _ := hostnet.ParseIPv4Prefix(&fe, f+".node_subnet", p.NodeSubnet)
		var mac net.HardwareAddr
		if p.VTEPMAC != "" {
			if mac, err = parseVTEPMAC(p.VTEPMAC); err != nil {
				fe.Add(f+".vtep_mac", "%v", err)
			}
		}
		if len(fe) == before {
			valid = append(valid, peerRoute{nodeID: p.NodeID, networkID: p.NetworkID, via: via, dst: dst, mac: mac})
		}
	}
	// Deterministic: when two peers claim one slice, the first by node ID
	// wins until the other goes.
	slices.SortFunc(valid, func(a, b peerRoute) int {
		return cmp.Or(cmp.Compare(a.nodeID, b.nodeID), a.dst.Addr().Compare(b.dst.Addr()), cmp.Compare(a.dst.Bits(), b.dst.Bits()))
	})
	return valid, fe.Err()
}

// Local is one of this node's slices, for a Router.
type Local struct {
	NetworkID string
	// Subnet is the network's subnet, e.g. "10.200.0.0/16".
	Subnet string
	// NodeSubnet is this node's slice of it, e.g. "10.200.3.0/24".
	NodeSubnet string
}

// local is a validated Local.
type local struct {
	Subnet, NodeSubnet netip.Prefix
}

// Router keeps the host's routes to other nodes' slices, for the agent: it
// knows the node's slices from its tasks, while its executor plugin
// attaches the tasks (sdk/netattach), which never touches these routes.
// The Router also keeps the VXLAN overlay (doc.go) and its firewall rules.
type Router struct {
	log *slog.Logger
	fw  *firewall

	mu       sync.Mutex
	underlay *underlay // nil until SetUnderlay
}

// NewRouter returns a Router; logger may be nil.
func NewRouter(logger *slog.Logger) *Router {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Router{log: logger, fw: newFirewall()}
}

// SetUnderlay gives the Router this node's ID and underlay address: the
// IPv4 address the other nodes reach it at (its gossip address), which the
// VXLAN device sends from and receives at. It returns the node's VTEP MAC,
// which the other nodes need (gossip publishes it): derived from the node
// ID, the same after a restart. Until it is called, peers not on a shared
// link are reported, not routed.
func (r *Router) SetUnderlay(nodeID, addr string) (vtepMAC string, err error) {
	u, err := newUnderlay(nodeID, addr)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.underlay = u
	return u.mac.String(), nil
}

// Set makes the host's routes those to the peers' slices of the networks
// in locals (this node's slices, those it has tasks on). For every such
// peer slice the host gets a route: "node_subnet via node_addr" when the
// peer's node address is on a link this node is on, otherwise one through
// the VXLAN overlay (which needs SetUnderlay first, and the peer's VTEP
// MAC; see doc.go). Routes of peers no longer listed, or of networks no
// longer in locals, are deleted, and changed ones replaced.
//
// Set applies every valid entry. It returns an error of kind
// ErrInvalidArgument naming each entry it skipped (locals[i].field,
// peers[i].field), joined with the errors of peers it cannot reach and of
// routes the kernel refused. Over the bounds (4,096 locals, 65,536 peers)
// it changes nothing.
func (r *Router) Set(locals []Local, peers []Peer) error {
	if len(locals) > maxLocals || len(peers) > maxPeers {
		return fmt.Errorf("tasknet: %d locals and %d peers, at most %d and %d are allowed: %w", len(locals), len(peers), maxLocals, maxPeers, sdk.ErrInvalidArgument)
	}
	var fe sdk.FieldErrors
	plans := make(map[string]local, len(locals))
	for i, l := range locals {
		f := fmt.Sprintf("locals[%d]", i)
		if l.NetworkID == "" {
			fe.Add(f+".network_id", "is required")
			continue
		}
		sub, ok1 := hostnet.ParseIPv4Prefix(&fe, f+".subnet", l.Subnet)
		ns, ok2 := hostnet.ParseIPv4Prefix(&fe, f+".node_subnet", l.NodeSubnet)
		if ok1 && ok2 {
			plans[l.NetworkID] = local{Subnet: sub, NodeSubnet: ns}
		}
	}
	valid, verr := validatePeers(peers)
	r.mu.Lock()
	defer r.mu.Unlock()
	return errors.Join(fe.Err(), verr, syncRoutes(r.log, r.fw, r.underlay, plans, valid))
}
