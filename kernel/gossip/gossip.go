package gossip

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/shoalhq/shoal/sdk"
)

// Endpoint is a task's place on a network, as workers share it.
type Endpoint struct {
	TaskID      string   `json:"task_id"`
	ServiceID   string   `json:"service_id,omitempty"`
	ServiceName string   `json:"service_name"`
	NetworkID   string   `json:"network_id"`
	NodeID      string   `json:"node_id,omitempty"` // set by the receiving side
	Addr        string   `json:"addr"`              // the task's address, e.g. "10.200.3.7"
	Aliases     []string `json:"aliases,omitempty"`
	// TaskName is the task's name without its ID, "web.1" (a replicated
	// service's slot 1) or "web.NODEID" (a global service's task): the
	// node's DNS answers it and TaskName.TaskID with Addr.
	TaskName string `json:"task_name,omitempty"`
	// VIP is the service's virtual IP on the network (no prefix), empty
	// for none (endpoint mode dnsrr, or not allocated yet).
	VIP string `json:"vip,omitempty"`
	// DNSRR: the service is in endpoint mode dnsrr (its name gives its
	// backends' addresses).
	DNSRR bool `json:"dnsrr,omitempty"`
	// Backend: the task runs and is healthy (or has no health check). Only
	// backends are in DNS answers for the service and behind its VIP and
	// published ports.
	Backend bool `json:"backend,omitempty"`
	// Ingress are the service's ports published through the routing mesh,
	// each "PUBLISHED:TARGET/PROTO" (e.g. "8080:80/tcp"), at most
	// MaxIngressPorts: every node balances them over the service's
	// backends.
	Ingress []string `json:"ingress,omitempty"`
}

// MaxIngressPorts bounds the routing mesh's ports of a service: they travel
// in every endpoint of every task of it, and an entry must fit one gossip
// packet (1,400 bytes). The control API refuses more.
const MaxIngressPorts = 16

// IngressPort is one port of the routing mesh.
type IngressPort struct {
	Published, Target uint16
	Protocol          string // "tcp" or "udp"
}

// String is the port's form in Endpoint.Ingress.
func (p IngressPort) String() string {
	return fmt.Sprintf("%d:%d/%s", p.Published, p.Target, p.Protocol)
}

// ParseIngressPort parses "PUBLISHED:TARGET/PROTO".
func ParseIngressPort(s string) (IngressPort, error) {
	var p IngressPort
	ports, proto, ok := strings.Cut(s, "/")
	if !ok || (proto != "tcp" && proto != "udp") {
		return p, fmt.Errorf("%q: want PUBLISHED:TARGET/tcp or /udp", s)
	}
	pub, tgt, ok := strings.Cut(ports, ":")
	if !ok {
		return p, fmt.Errorf("%q: want PUBLISHED:TARGET/PROTO", s)
	}
	a, err1 := strconv.ParseUint(pub, 10, 16)
	b, err2 := strconv.ParseUint(tgt, 10, 16)
	if err1 != nil || err2 != nil || a == 0 || b == 0 {
		return p, fmt.Errorf("%q: ports must be 1 to 65535", s)
	}
	return IngressPort{Published: uint16(a), Target: uint16(b), Protocol: proto}, nil
}

// Slice is a node's part of a network's subnet: its tasks on NetworkID have
// addresses in NodeSubnet.
type Slice struct {
	NetworkID  string `json:"network_id"`
	NodeSubnet string `json:"node_subnet"`
}

// PeerInfo is another member: its node ID, the address it gossips from
// (the host address other nodes route its slices to), its slices, and the
// MAC address of its VXLAN tunnel endpoint.
type PeerInfo struct {
	NodeID string
	Addr   string
	Slices []Slice
	// VTEPMAC is the MAC address of the member's end of the VXLAN overlay
	// (kernel/tasknet), e.g. "0a:1b:2c:3d:4e:5f": what nodes not on its
	// link reach its slices through. Empty when it published none (an
	// older version, or a node that keeps no overlay).
	VTEPMAC string
}

// Config is the gossip part of a worker.
type Config struct {
	// NodeID names the member; required, unique in the cluster.
	NodeID string
	// BindAddr is the address to listen on (UDP and TCP). Default: 0.0.0.0.
	BindAddr string
	// BindPort is the port to listen on; 0 picks a free one (LocalAddr
	// tells which). memberlist's customary port is 7946.
	BindPort int
	// AdvertiseAddr is the address other members reach this one at, and
	// the one they route this node's slices to. Default: the bind address,
	// or the host's first private address when binding 0.0.0.0.
	AdvertiseAddr string
	// Logger receives memberlist's and the gossip's logs. Default: discarded.
	Logger *slog.Logger
	// SecretKey, when set, encrypts and authenticates all gossip with AES
	// (16, 24 or 32 bytes). Every member needs the same key.
	SecretKey []byte
	// OnChange is called after the endpoints or the peers changed. It runs
	// on memberlist's goroutines: it must return quickly (signal a channel).
	OnChange func()
	// VTEPMAC is the MAC address of this node's VXLAN tunnel endpoint
	// (tasknet.Router.SetUnderlay gives it), published with its slices for
	// the other members' PeerInfo. A unicast MAC; empty publishes none.
	VTEPMAC string
}

// Timing, tuned for one LAN.
const (
	// gossipInterval: memberlist's LAN default is 200 ms. A change travels
	// about log3(N) rounds (every member that learns it passes it on), so
	// 100 ms rounds keep 50 members well under the 2 s the cluster allows;
	// a round only sends packets when something changed.
	gossipInterval = 100 * time.Millisecond
	// retransmitMult: every member that learns an entry passes it on
	// mult*ceil(log10(N+1)) times, each time to a random member, so a
	// member misses it with a chance of about e^-(that many) until the
	// next full sync (30 s). memberlist's 4 gives e^-8 for 50 members: one
	// of 50 members misses about one change in 60. 8 gives e^-16.
	retransmitMult = 8
	// tombstoneTTL is how long a removed endpoint is remembered, so that a
	// member that missed the removal learns it in a full sync (every 30 s)
	// instead of passing the old endpoint back.
	tombstoneTTL = 5 * time.Minute
)

// Bounds on what a member publishes, so that any entry fits one gossip
// packet.
const (
	maxField   = 128
	maxAliases = 8
	maxSlices  = 64
)

// Gossip is one worker's member of the endpoint gossip. Its methods are
// safe for concurrent use.
type Gossip struct {
	nodeID   string
	epoch    int64
	log      *slog.Logger
	onChange func()
	store    *store
	queue    *queue
	ml       *memberlist.Memberlist
}

// New starts a member listening on cfg's address. It is alone until Join.
func New(cfg Config) (*Gossip, error) {
	var fe sdk.FieldErrors
	if cfg.NodeID == "" {
		fe.Add("node_id", "is required")
	} else if len(cfg.NodeID) > maxField {
		fe.Add("node_id", "is %d characters, at most %d are allowed", len(cfg.NodeID), maxField)
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "0.0.0.0"
	}
	if _, err := netip.ParseAddr(cfg.BindAddr); err != nil {
		fe.Add("bind_addr", "%q is not an IP address", cfg.BindAddr)
	}
	if cfg.BindPort < 0 || cfg.BindPort > 65535 {
		fe.Add("bind_port", "%d is not in 0..65535", cfg.BindPort)
	}
	if cfg.AdvertiseAddr != "" {
		if _, err := netip.ParseAddr(cfg.AdvertiseAddr); err != nil {
			fe.Add("advertise_addr", "%q is not an IP address", cfg.AdvertiseAddr)
		}
	}
	if n := len(cfg.SecretKey); n != 0 && n != 16 && n != 24 && n != 32 {
		fe.Add("secret_key", "is %d bytes: an AES key is 16, 24 or 32 bytes", n)
	}
	vtepMAC, ok := checkMAC(&fe, "vtep_mac", cfg.VTEPMAC)
	if err := fe.Err(); err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Gossip{
		nodeID:   cfg.NodeID,
		epoch:    time.Now().UnixNano(),
		log:      log,
		onChange: cfg.OnChange,
		store:    newStore(cfg.NodeID),
	}
	if ok {
		g.store.vtepMAC = vtepMAC
	}
	g.store.local(g.epoch, []Slice{}, nil, false, time.Now())

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeID
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.BindPort
	mc.AdvertisePort = cfg.BindPort
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.GossipInterval = gossipInterval
	mc.RetransmitMult = retransmitMult
	mc.SecretKey = cfg.SecretKey
	mc.Delegate = (*delegate)(g)
	mc.Events = (*events)(g)
	mc.LogOutput = &logWriter{log: log.With("part", "memberlist")}
	g.queue = &queue{numNodes: g.store.numAlive, mult: mc.RetransmitMult}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("gossip: start memberlist: %w", err)
	}
	g.ml = ml
	return g, nil
}

// LocalAddr is the address and port this member is reached at.
func (g *Gossip) LocalAddr() string {
	n := g.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Join contacts the seeds ("host:port") and syncs with them. It returns
// how many it reached; an error only when it reached none.
func (g *Gossip) Join(seeds []string) (int, error) {
	n, err := g.ml.Join(seeds)
	if err != nil {
		return n, fmt.Errorf("gossip: join: %w", err)
	}
	return n, nil
}

// Publish replaces this node's endpoints with eps: the others see the new
// set, and endpoints not in it removed. NodeID may be empty; it is this
// node's ID anyway. Invalid endpoints are an error of kind
// ErrInvalidArgument naming them, and nothing is published.
func (g *Gossip) Publish(eps []Endpoint) error {
	var fe sdk.FieldErrors
	seen := map[string]int{}
	norm := make([]Endpoint, len(eps))
	for i, ep := range eps {
		f := fmt.Sprintf("endpoints[%d]", i)
		validateEndpoint(&fe, f, ep, g.nodeID)
		if j, dup := seen[endpointKey(ep)]; dup {
			fe.Add(f, "task %s is also on network %s in endpoints[%d]", ep.TaskID, ep.NetworkID, j)
		}
		seen[endpointKey(ep)] = i
		norm[i] = *ep.clone()
		norm[i].NodeID = ""
	}
	if err := fe.Err(); err != nil {
		return fmt.Errorf("gossip: publish: %w", err)
	}
	g.publish(g.store.local(g.epoch, nil, norm, true, time.Now()))
	return nil
}

// PublishSlices replaces the slices this node serves, for the other
// members' routes (Peers).
func (g *Gossip) PublishSlices(slices []Slice) error {
	var fe sdk.FieldErrors
	if len(slices) > maxSlices {
		fe.Add("slices", "has %d slices, at most %d are allowed", len(slices), maxSlices)
	}
	for i, s := range slices {
		f := fmt.Sprintf("slices[%d]", i)
		checkField(&fe, f+".network_id", s.NetworkID, true)
		if p, err := netip.ParsePrefix(s.NodeSubnet); err != nil || p.Masked() != p {
			fe.Add(f+".node_subnet", "%q is not a network in CIDR form (e.g. \"10.200.3.0/24\")", s.NodeSubnet)
		}
	}
	if err := fe.Err(); err != nil {
		return fmt.Errorf("gossip: publish slices: %w", err)
	}
	if slices == nil {
		slices = []Slice{}
	}
	g.publish(g.store.local(g.epoch, slices, nil, false, time.Now()))
	return nil
}

// publish queues this node's changed entries for gossip.
func (g *Gossip) publish(changed []entry) {
	for _, e := range changed {
		g.broadcast(e)
	}
	if len(changed) > 0 {
		g.changed()
	}
}

// Endpoints returns every endpoint of this node and the live members,
// sorted by service name, network and task.
func (g *Gossip) Endpoints() []Endpoint { return g.store.endpoints(nil) }

// Lookup returns the endpoints on networkID whose service name or one of
// whose aliases is name.
func (g *Gossip) Lookup(name, networkID string) []Endpoint {
	return g.store.endpoints(func(ep *Endpoint) bool {
		if ep.NetworkID != networkID {
			return false
		}
		if ep.ServiceName == name {
			return true
		}
		for _, a := range ep.Aliases {
			if a == name {
				return true
			}
		}
		return false
	})
}

// Peers returns the other live members with their slices, sorted by node
// ID.
func (g *Gossip) Peers() []PeerInfo { return g.store.peers() }

// Leave tells the others this member is leaving (they drop its endpoints
// at once), waiting at most timeout for the message to spread.
func (g *Gossip) Leave(timeout time.Duration) error {
	if err := g.ml.Leave(timeout); err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	return nil
}

// Shutdown stops the member without telling the others: they find it dead
// after their failure detection, and drop its endpoints then. Call Leave
// first for a graceful exit.
func (g *Gossip) Shutdown() error {
	if err := g.ml.Shutdown(); err != nil {
		return fmt.Errorf("gossip: shutdown: %w", err)
	}
	return nil
}

func (g *Gossip) changed() {
	if g.onChange != nil {
		g.onChange()
	}
}

// broadcast queues an entry; a newer entry for the same key replaces one
// still queued.
func (g *Gossip) broadcast(e entry) {
	b, err := encode(msgEntry, e)
	if err != nil {
		g.log.Error("encode gossip entry", "err", err)
		return
	}
	g.queue.put(e.Node+"/"+e.Key, b)
}

// receive merges entries from another member. Entries new to this member
// are passed on (relay), which is what makes a change reach every member
// in a few rounds.
func (g *Gossip) receive(es []entry, relay bool) {
	now := time.Now()
	changed := false
	for _, e := range es {
		if err := validateEntry(e); err != nil {
			g.log.Debug("dropped a gossip entry", "err", err)
			continue
		}
		switch g.store.apply(e, now) {
		case applied:
			changed = true
			if relay {
				g.broadcast(e)
			}
		case contradicts:
			g.broadcast(g.store.tombstone(e.Key, e.Seq, now))
		}
	}
	if changed {
		g.changed()
	}
}

// validateEndpoint checks an endpoint this node publishes.
func validateEndpoint(fe *sdk.FieldErrors, f string, ep Endpoint, self string) {
	checkField(fe, f+".task_id", ep.TaskID, true)
	checkField(fe, f+".service_id", ep.ServiceID, false)
	checkField(fe, f+".service_name", ep.ServiceName, true)
	checkField(fe, f+".network_id", ep.NetworkID, true)
	if ep.NodeID != "" && ep.NodeID != self {
		fe.Add(f+".node_id", "%q is not this node (%s)", ep.NodeID, self)
	}
	if _, err := netip.ParseAddr(ep.Addr); err != nil {
		fe.Add(f+".addr", "%q is not an IP address", ep.Addr)
	}
	if len(ep.Aliases) > maxAliases {
		fe.Add(f+".aliases", "has %d aliases, at most %d are allowed", len(ep.Aliases), maxAliases)
	}
	for i, a := range ep.Aliases {
		checkField(fe, fmt.Sprintf("%s.aliases[%d]", f, i), a, true)
	}
	checkField(fe, f+".task_name", ep.TaskName, false)
	if ep.VIP != "" {
		if _, err := netip.ParseAddr(ep.VIP); err != nil {
			fe.Add(f+".vip", "%q is not an IP address", ep.VIP)
		}
	}
	if len(ep.Ingress) > MaxIngressPorts {
		fe.Add(f+".ingress", "has %d ports, at most %d are allowed", len(ep.Ingress), MaxIngressPorts)
	}
	for i, p := range ep.Ingress {
		if _, err := ParseIngressPort(p); err != nil {
			fe.Add(fmt.Sprintf("%s.ingress[%d]", f, i), "%v", err)
		}
	}
}

func checkField(fe *sdk.FieldErrors, f, v string, required bool) {
	switch {
	case v == "" && required:
		fe.Add(f, "is required")
	case len(v) > maxField:
		fe.Add(f, "is %d characters, at most %d are allowed", len(v), maxField)
	case strings.ContainsRune(v, 0):
		fe.Add(f, "contains a NUL character")
	}
}

// checkMAC checks a VTEP MAC (empty is none) and returns it in canonical
// form ("0a:1b:2c:3d:4e:5f"); ok is false when it is empty or invalid. A
// VTEP's MAC is a unicast Ethernet address: the overlay's forwarding
// entries map it to one node, and a multicast or zero address would make
// the kernel flood or drop.
func checkMAC(fe *sdk.FieldErrors, f, s string) (string, bool) {
	if s == "" {
		return "", false
	}
	mac, err := net.ParseMAC(s)
	switch {
	case len(s) > maxField || err != nil || len(mac) != 6:
		fe.Add(f, "%q is not a MAC address (e.g. \"0a:1b:2c:3d:4e:5f\")", truncate(s))
	case mac[0]&1 != 0:
		fe.Add(f, "%s is a multicast address; a tunnel endpoint's is unicast", mac)
	case slices.Equal(mac, make(net.HardwareAddr, 6)):
		fe.Add(f, "is the zero address")
	default:
		return mac.String(), true
	}
	return "", false
}

// truncate keeps an invalid value short in an error.
func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// validateEntry checks an entry from another member.
func validateEntry(e entry) error {
	var fe sdk.FieldErrors
	checkField(&fe, "n", e.Node, true)
	switch {
	case e.Key == headKey:
		if e.Endpoint != nil {
			fe.Add("ep", "is set on a head entry")
		}
		if len(e.Slices) > maxSlices {
			fe.Add("sl", "has %d slices, at most %d are allowed", len(e.Slices), maxSlices)
		}
		checkMAC(&fe, "mac", e.MAC)
	case e.MAC != "":
		fe.Add("mac", "is set on an endpoint entry")
	case e.Deleted:
	case e.Endpoint == nil:
		fe.Add("ep", "is missing")
	default:
		validateEndpoint(&fe, "ep", *e.Endpoint, "")
		if endpointKey(*e.Endpoint) != e.Key {
			fe.Add("k", "does not match the endpoint")
		}
	}
	if err := fe.Err(); err != nil {
		return fmt.Errorf("entry of node %q: %w", e.Node, err)
	}
	return nil
}

// Messages between members: a type byte, then JSON.
const (
	msgEntry byte = 1 // one entry (broadcast)
	msgState byte = 2 // every entry a member holds (full sync)
)

func encode(t byte, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append([]byte{t}, b...), nil
}

func decode(b []byte) (byte, []entry, error) {
	if len(b) == 0 {
		return 0, nil, errors.New("empty message")
	}
	switch b[0] {
	case msgEntry:
		var e entry
		if err := json.Unmarshal(b[1:], &e); err != nil {
			return 0, nil, err
		}
		return msgEntry, []entry{e}, nil
	case msgState:
		var es []entry
		if err := json.Unmarshal(b[1:], &es); err != nil {
			return 0, nil, err
		}
		return msgState, es, nil
	}
	return 0, nil, fmt.Errorf("unknown message type %d", b[0])
}
