package lb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net/netip"
	"regexp"
	"sync"
	"time"

	"github.com/vishvananda/netns"

	"github.com/shoalhq/shoal/sdk"
)

// Defaults of Config.
const (
	DefaultTable       = "shoal"
	DefaultMaxServices = 4096
	DefaultMaxPorts    = 256
	DefaultMaxBackends = 4096
	// DefaultMark is the packet mark bit that asks for masquerade.
	DefaultMark uint32 = 0x00100000
)

// Protocol is a port's transport protocol.
type Protocol string

// The protocols a port may have.
const (
	TCP Protocol = "tcp"
	UDP Protocol = "udp"
)

// number is the protocol's IP protocol number.
func (p Protocol) number() byte {
	if p == UDP {
		return 17
	}
	return 6
}

// Service is one service as the node balances it: a VIP on one network,
// the addresses of its healthy running tasks anywhere in the cluster, and
// its ports with, per port, where connections go.
type Service struct {
	// Name identifies the service in errors and in the names of its chains
	// and maps: letters, digits, '.', '_' and '-', at most 64 characters,
	// unique in a Sync. A service ID fits.
	Name string
	// VIP is the service's virtual IP; the zero Addr for none (a service
	// reached only by its published ports). IPv4 only; one service's.
	VIP netip.Addr
	// Backends are the service's healthy running tasks' addresses. With a
	// VIP, a connection to the VIP on any TCP or UDP port that is not one
	// of Ports goes to one of them, on the same port (as swarm mode's VIPs
	// forward every port). Empty: such connections are refused (TCP reset,
	// ICMP port unreachable for UDP), never routed out by the default
	// route.
	Backends []netip.Addr
	// Ports are the service's ports; a (Protocol, Port) pair appears once.
	// A port here is balanced by its own mapping, not by Backends.
	Ports []Port
}

// Port is one port of a service.
type Port struct {
	Protocol Protocol
	// Port is the port connections to the VIP are made to (swarm's target
	// port: the VIP listens where the tasks do).
	Port uint16
	// Published is the routing mesh's port on every address of the node,
	// 0 for none. A (Protocol, Published) pair is used by one service.
	Published uint16
	// Backends are where connections go: task address and port. Empty
	// means connections are refused (ICMP port unreachable), never
	// sent to the VIP's nonexistent route.
	Backends []netip.AddrPort
}

// Config configures a Balancer.
type Config struct {
	// Table is the name of the nftables table (family ip) the Balancer
	// owns: it is replaced by every Sync and removed by Close. Default
	// DefaultTable.
	Table string
	// NetNS is the path of the network namespace to keep the rules in
	// (e.g. /run/netns/x); empty for the process's own.
	NetNS string
	// MaxServices bounds the services of a Sync, MaxPorts the ports of a
	// service and MaxBackends the backends of a port, and a service's
	// Backends. 0 means the default.
	MaxServices, MaxPorts, MaxBackends int
	// Mark is the packet mark bit (one bit) set on connections to
	// masquerade, and cleared when they are. 0 means DefaultMark.
	Mark uint32
	// NoLocalhost keeps published ports off 127.0.0.1, and leaves
	// net.ipv4.conf.all.route_localnet alone (see the package doc).
	NoLocalhost bool
}

// Balancer keeps a node's VIPs and published ports in its nftables table.
// Its methods are safe for concurrent use; Syncs are applied one at a time.
type Balancer struct {
	cfg Config
	log *slog.Logger
	ns  netns.NsHandle // -1 for the process's namespace

	mu     sync.Mutex
	closed bool
	// localnetSet: route_localnet is on since a Sync; restoreLocalnet is
	// its value before, to put back on Close ("" when it was on already).
	localnetSet     bool
	restoreLocalnet string
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// ErrClosed is returned by Sync after Close.
var ErrClosed = errors.New("lb: closed")

// New returns a Balancer for cfg. It changes nothing on the node: the
// first Sync makes the table (replacing whatever a previous process left).
func New(cfg Config, logger *slog.Logger) (*Balancer, error) {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if cfg.MaxServices == 0 {
		cfg.MaxServices = DefaultMaxServices
	}
	if cfg.MaxPorts == 0 {
		cfg.MaxPorts = DefaultMaxPorts
	}
	if cfg.MaxBackends == 0 {
		cfg.MaxBackends = DefaultMaxBackends
	}
	if cfg.Mark == 0 {
		cfg.Mark = DefaultMark
	}
	var fe sdk.FieldErrors
	if !nameRE.MatchString(cfg.Table) {
		fe.Add("table", "%q is not a table name (letters, digits, '.', '_', '-'; at most 64)", cfg.Table)
	}
	if bits.OnesCount32(cfg.Mark) != 1 {
		fe.Add("mark", "%#x is not a single bit", cfg.Mark)
	}
	for _, m := range []struct {
		field string
		v     int
	}{{"max_services", cfg.MaxServices}, {"max_ports", cfg.MaxPorts}, {"max_backends", cfg.MaxBackends}} {
		if m.v < 0 {
			fe.Add(m.field, "%d is negative", m.v)
		}
	}
	if err := fe.Err(); err != nil {
		return nil, fmt.Errorf("lb: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b := &Balancer{cfg: cfg, log: logger, ns: -1}
	if cfg.NetNS != "" {
		h, err := netns.GetFromPath(cfg.NetNS)
		if err != nil {
			return nil, fmt.Errorf("lb: open netns %s: %w", cfg.NetNS, err)
		}
		b.ns = h
	}
	return b, nil
}

// Sync makes the table hold exactly the rules for services, in one netlink
// transaction: either all of it applies or none does. Invalid input is an
// error wrapping sdk.ErrInvalidArgument that names every bad field, and
// changes nothing. Established connections keep their backend; new ones
// are spread over the backends of the new state.
func (b *Balancer) Sync(ctx context.Context, services []Service) error {
	rs, err := plan(b.cfg, services)
	if err != nil {
		return fmt.Errorf("lb: sync: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("lb: sync: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	start := time.Now()
	if err := b.apply(rs); err != nil {
		return fmt.Errorf("lb: sync: %w", err)
	}
	if !b.cfg.NoLocalhost && !b.localnetSet {
		// Only now: the table's guard against martian 127/8 traffic is in.
		prev, err := b.setRouteLocalnet("1")
		if err != nil {
			return fmt.Errorf("lb: sync: %w", err)
		}
		b.localnetSet = true
		if prev != "1" {
			b.restoreLocalnet = prev
		}
	}
	b.log.Debug("lb: synced", "table", b.cfg.Table, "services", len(services),
		"vips", len(rs.vips), "published", len(rs.published), "backends", rs.backendCount(),
		"took", time.Since(start))
	return nil
}

// Close removes the table, puts route_localnet back as the Balancer found
// it, and releases the namespace. Connections already established keep
// flowing (conntrack holds their NAT); new ones are no longer balanced.
func (b *Balancer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	var errs []error
	if b.restoreLocalnet != "" {
		if _, err := b.setRouteLocalnet(b.restoreLocalnet); err != nil {
			errs = append(errs, err)
		}
	}
	if err := b.removeTable(); err != nil {
		errs = append(errs, err)
	}
	if b.ns >= 0 {
		if err := b.ns.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lb: close: %w", err)
	}
	return nil
}
