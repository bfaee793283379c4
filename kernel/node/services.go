package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/shoalhq/shoal/kernel/dns"
	"github.com/shoalhq/shoal/kernel/gossip"
	"github.com/shoalhq/shoal/kernel/lb"
)

// Services that find each other (docs/DESIGN.md): every worker that runs
// real tasks answers DNS for its tasks (kernel/dns) and balances the
// cluster's VIPs and routing-mesh ports (kernel/lb), both from one source:
// the endpoints the workers gossip (kernel/gossip), this node's own
// included. An endpoint carries what DNS and the balancer need of a task:
// its service, name, address, the service's VIP on the network and its
// mode, its mesh ports, and whether it is a backend (running and healthy,
// from the agent's own status reports). Why gossip and not the managers'
// assignments: a node is only told about its own tasks, while a name or a
// VIP must reach every task of the service wherever it runs; gossip
// already carries every task's address to every worker (for the routes),
// converges in about a second for 50 nodes, and keeps working while the
// managers are unreachable. The managers are not in the path: a task that
// dies or turns unhealthy leaves every node's answers and backend sets as
// soon as its own node's gossip says so.
//
// serviceView turns the whole endpoint set into the DNS index (diffed:
// only what changed is set or removed), the DNS server's addresses (port
// 53 on the gateway of every network with a task on this node) and one
// Sync of the balancer (which replaces its nftables table atomically).

// balancer is lb.Balancer as serviceView uses it.
type balancer interface {
	Sync(ctx context.Context, services []lb.Service) error
}

// dnsListener is dns.Server as serviceView uses it.
type dnsListener interface {
	SetAddrs(addrs []string) error
}

// dnsPort is where tasks' resolvers ask: their resolv.conf names the
// gateway of their first network, with no port.
const dnsPort = "53"

type svcKey struct{ network, name string }
type taskKey struct{ network, task string }

type serviceView struct {
	ix  *dns.Index
	dns dnsListener // nil: no DNS server (it could not start)
	lb  balancer    // nil: no balancer (no nftables)
	log *slog.Logger

	mu       sync.Mutex
	services map[svcKey]dns.Service
	tasks    map[taskKey]dns.Task
	addrs    []string
	lastLB   []lb.Service
	lbSynced bool
}

func newServiceView(ix *dns.Index, d dnsListener, b balancer, logger *slog.Logger) *serviceView {
	return &serviceView{ix: ix, dns: d, lb: b, log: logger, services: map[svcKey]dns.Service{}, tasks: map[taskKey]dns.Task{}}
}

// apply makes DNS and the balancer follow eps, the cluster's endpoints,
// with gateways the node's gateways of the networks its tasks are on. The
// balancer's table is written when its content changed, or with force (the
// periodic resync, every routeResync): that repairs it after someone else
// flushed the ruleset (a firewall reload) or replaced the table.
func (v *serviceView) apply(ctx context.Context, eps []gossip.Endpoint, gateways []string, force bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	var errs []error
	errs = append(errs, v.applyDNS(eps)...)
	if v.dns != nil {
		addrs := make([]string, 0, len(gateways))
		for _, g := range gateways {
			addrs = append(addrs, net.JoinHostPort(g, dnsPort))
		}
		slices.Sort(addrs)
		addrs = slices.Compact(addrs)
		if !slices.Equal(addrs, v.addrs) {
			if err := v.dns.SetAddrs(addrs); err != nil {
				errs = append(errs, err)
			} else {
				v.addrs = addrs
			}
		}
	}
	if v.lb != nil {
		want, lerrs := balanced(eps)
		errs = append(errs, lerrs...)
		if force || !v.lbSynced || !slices.EqualFunc(want, v.lastLB, equalLBService) {
			if err := v.lb.Sync(ctx, want); err != nil {
				errs = append(errs, fmt.Errorf("load balancing: %w", err))
			} else {
				v.lastLB, v.lbSynced = want, true
			}
		}
	}
	return errors.Join(errs...)
}

// applyDNS sets the index's services and tasks to those of eps, changing
// only what differs. v.mu is held.
func (v *serviceView) applyDNS(eps []gossip.Endpoint) []error {
	var errs []error
	svcs := map[svcKey]dns.Service{}
	tasks := map[taskKey]dns.Task{}
	for _, ep := range eps {
		addr, err := netip.ParseAddr(ep.Addr)
		if err != nil {
			continue // gossip validated it; a bad one is simply not answered
		}
		k := svcKey{ep.NetworkID, ep.ServiceName}
		s, had := svcs[k]
		if !had {
			s = dns.Service{NetworkID: ep.NetworkID, Name: ep.ServiceName, Mode: dns.ModeVIP}
		}
		if ep.DNSRR {
			s.Mode = dns.ModeDNSRR
		}
		if vip, err := netip.ParseAddr(ep.VIP); err == nil && !s.VIP.IsValid() {
			s.VIP = vip
		}
		for _, a := range ep.Aliases {
			if !slices.Contains(s.Aliases, a) {
				s.Aliases = append(s.Aliases, a)
			}
		}
		svcs[k] = s
		tasks[taskKey{ep.NetworkID, ep.TaskID}] = dns.Task{NetworkID: ep.NetworkID, TaskID: ep.TaskID, Name: ep.TaskName,
			ServiceName: ep.ServiceName, Addr: addr, Backend: ep.Backend}
	}
	for k := range v.tasks {
		if _, ok := tasks[k]; !ok {
			v.ix.RemoveTask(k.network, k.task)
			delete(v.tasks, k)
		}
	}
	for k := range v.services {
		if _, ok := svcs[k]; !ok {
			v.ix.RemoveService(k.network, k.name)
			delete(v.services, k)
		}
	}
	for k, s := range svcs {
		slices.Sort(s.Aliases)
		if old, ok := v.services[k]; ok && equalDNSService(old, s) {
			continue
		}
		if err := v.ix.SetService(s); err != nil {
			errs = append(errs, err)
			continue
		}
		v.services[k] = s
	}
	for k, t := range tasks {
		if old, ok := v.tasks[k]; ok && equalDNSTask(old, t) {
			continue
		}
		if err := v.ix.SetTask(t); err != nil {
			errs = append(errs, err)
			continue
		}
		v.tasks[k] = t
	}
	return errs
}

func equalDNSTask(a, b dns.Task) bool {
	return a.NetworkID == b.NetworkID && a.TaskID == b.TaskID && a.Name == b.Name && a.ServiceName == b.ServiceName &&
		a.Addr == b.Addr && a.Backend == b.Backend && slices.Equal(a.Aliases, b.Aliases)
}

func equalDNSService(a, b dns.Service) bool {
	return a.NetworkID == b.NetworkID && a.Name == b.Name && a.Mode == b.Mode && a.VIP == b.VIP && slices.Equal(a.Aliases, b.Aliases)
}

// balanced is what the balancer should hold for eps: per service and
// network with a VIP, the VIP over the service's backends on that network
// (every port); per service with mesh ports, those ports over its backends,
// on the first of its networks (every task of a service is on all of its
// networks, so that is all of them). A mesh port claimed by two services
// (gossip from before one of them changed) goes to the one with the lower
// ID, and the other is reported.
func balanced(eps []gossip.Endpoint) ([]lb.Service, []error) {
	type group struct {
		serviceID, network string
		vip                netip.Addr
		backends           []netip.Addr
		ingress            []gossip.IngressPort
	}
	groups := map[[2]string]*group{}
	for _, ep := range eps {
		if ep.ServiceID == "" {
			continue
		}
		k := [2]string{ep.ServiceID, ep.NetworkID}
		g := groups[k]
		if g == nil {
			g = &group{serviceID: ep.ServiceID, network: ep.NetworkID}
			groups[k] = g
		}
		if vip, err := netip.ParseAddr(ep.VIP); err == nil && !g.vip.IsValid() && vip.Is4() {
			g.vip = vip
		}
		if addr, err := netip.ParseAddr(ep.Addr); err == nil && ep.Backend && addr.Is4() {
			g.backends = append(g.backends, addr)
		}
		for _, s := range ep.Ingress {
			p, err := gossip.ParseIngressPort(s)
			if err == nil && !slices.Contains(g.ingress, p) {
				g.ingress = append(g.ingress, p)
			}
		}
	}
	ordered := make([]*group, 0, len(groups))
	for _, g := range groups {
		slices.SortFunc(g.backends, netip.Addr.Compare)
		g.backends = slices.Compact(g.backends)
		ordered = append(ordered, g)
	}
	slices.SortFunc(ordered, func(a, b *group) int {
		return cmp.Or(cmp.Compare(a.serviceID, b.serviceID), cmp.Compare(a.network, b.network))
	})
	var out []lb.Service
	var errs []error
	meshDone := map[string]bool{}                // services whose mesh ports are placed
	published := map[gossip.IngressPort]string{} // (published, protocol) -> service
	for _, g := range ordered {
		s := lb.Service{Name: lbName(g.serviceID, g.network), VIP: g.vip}
		if g.vip.IsValid() {
			s.Backends = g.backends
		}
		if !meshDone[g.serviceID] && len(g.ingress) > 0 {
			meshDone[g.serviceID] = true
			slices.SortFunc(g.ingress, func(a, b gossip.IngressPort) int {
				return cmp.Or(cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Published, b.Published))
			})
			for _, p := range g.ingress {
				k := gossip.IngressPort{Published: p.Published, Protocol: p.Protocol}
				if other, taken := published[k]; taken {
					errs = append(errs, fmt.Errorf("published port %d/%s: claimed by services %s and %s; kept for %s", p.Published, p.Protocol, other, g.serviceID, other))
					continue
				}
				published[k] = g.serviceID
				port := lb.Port{Protocol: lb.Protocol(p.Protocol), Port: p.Target, Published: p.Published}
				for _, b := range g.backends {
					port.Backends = append(port.Backends, netip.AddrPortFrom(b, p.Target))
				}
				s.Ports = append(s.Ports, port)
			}
		}
		if s.VIP.IsValid() || len(s.Ports) > 0 {
			out = append(out, s)
		}
	}
	return out, errs
}

// lbName names a service's rules on one network: its ID and the network's,
// which fit lb's 64 characters (IDs are 25).
func lbName(serviceID, networkID string) string {
	return truncate(serviceID, 31) + "-" + truncate(networkID, 31)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func equalLBService(a, b lb.Service) bool {
	return a.Name == b.Name && a.VIP == b.VIP && slices.Equal(a.Backends, b.Backends) &&
		slices.EqualFunc(a.Ports, b.Ports, func(x, y lb.Port) bool {
			return x.Protocol == y.Protocol && x.Port == y.Port && x.Published == y.Published && slices.Equal(x.Backends, y.Backends)
		})
}
