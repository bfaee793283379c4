package allocator

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/state"
	ipamv1 "github.com/shoalhq/shoal/sdk/proto/shoal/ipam/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// errBadReply marks a plugin reply that breaks the contract.
var errBadReply = errors.New("ipam plugin reply out of contract")

// batch is one request to the plugin and the store-only changes that go
// with its commit.
type batch struct {
	req *ipamv1.AllocateRequest
	// subnets are the networks' subnets as read when the batch was built,
	// to check the addresses against.
	subnets map[string]netip.Prefix
	// nets, svcs and tasks are the work items the batch covers: done with
	// once it is committed (their own changes bring them back if need be).
	nets, svcs, tasks []string
	// dropSvcs hold virtual IPs of networks they left.
	dropSvcs []string
	// gone are removed nodes whose slices may be dropped.
	gone []string
}

func (b *batch) empty() bool {
	return len(b.req.GetSubnets())+len(b.req.GetAddresses()) == 0 && len(b.dropSvcs) == 0 && len(b.gone) == 0 &&
		len(b.nets)+len(b.svcs)+len(b.tasks) == 0
}

// build reads the store for what w's items lack, up to batchSize
// addresses. Items that need nothing are dropped from w; items waiting for
// a network's subnet are moved to w's blocked sets.
func (a *Allocator) build(w *work) *batch {
	b := &batch{req: &ipamv1.AllocateRequest{}, subnets: map[string]netip.Prefix{}}
	a.st.View(func(tx *state.ReadTx) {
		subnet := func(id string) (netip.Prefix, bool) {
			if p, ok := b.subnets[id]; ok {
				return p, true
			}
			n := tx.Network(id)
			if n == nil || n.GetSubnet() == "" {
				return netip.Prefix{}, false
			}
			p, err := netip.ParsePrefix(n.GetSubnet())
			if err != nil {
				return p, false
			}
			b.subnets[id] = p
			return p, true
		}
		for _, id := range sortedKeys(w.nets) {
			delete(w.nets, id)
			n := tx.Network(id)
			if n == nil || n.GetSubnet() != "" {
				continue
			}
			b.nets = append(b.nets, id)
			b.req.Subnets = append(b.req.Subnets, &ipamv1.SubnetRequest{
				NetworkId: id, Subnet: n.GetSpec().GetSubnet(), NodePrefixLen: n.GetSpec().GetNodePrefixLen(),
			})
		}
		for _, id := range sortedKeys(w.svcs) {
			if len(b.req.Addresses) >= batchSize {
				break
			}
			delete(w.svcs, id)
			s := tx.Service(id)
			if s == nil {
				continue
			}
			b.svcs = append(b.svcs, id)
			wants := map[string]bool{}
			for _, n := range s.GetSpec().GetTask().GetNetworks() {
				if !wantsVIP(s, n.GetTarget()) {
					continue
				}
				wants[n.GetTarget()] = true
				if vipOf(s, n.GetTarget()) != "" || tx.Network(n.GetTarget()) == nil {
					continue
				}
				if _, ok := subnet(n.GetTarget()); !ok {
					w.blockedSvcs[id] = true
					continue
				}
				b.req.Addresses = append(b.req.Addresses, &ipamv1.AddressRequest{NetworkId: n.GetTarget(), Owner: id})
			}
			for _, v := range s.GetVirtualIps() {
				if !wants[v.GetNetworkId()] {
					b.dropSvcs = append(b.dropSvcs, id)
					break
				}
			}
		}
		for _, id := range sortedKeys(w.tasks) {
			if len(b.req.Addresses) >= batchSize {
				break
			}
			delete(w.tasks, id)
			t := tx.Task(id)
			if t == nil || !needsAddress(t) {
				continue
			}
			b.tasks = append(b.tasks, id)
			for _, n := range t.GetSpec().GetNetworks() {
				if attachment(t, n.GetTarget()).GetAddr() != "" {
					continue
				}
				if _, ok := subnet(n.GetTarget()); !ok {
					w.blockedTasks[id] = true
					continue
				}
				b.req.Addresses = append(b.req.Addresses, &ipamv1.AddressRequest{NetworkId: n.GetTarget(), Owner: id, NodeId: t.GetNodeId()})
			}
		}
		for _, node := range sortedKeys(w.gone) {
			delete(w.gone, node)
			if tx.Node(node) == nil {
				b.gone = append(b.gone, node)
			}
		}
	})
	return b
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// validate checks a reply against its request: one result per item,
// naming it; addresses in CIDR form inside their network's subnet, task
// addresses inside the node's slice; no address twice in the batch.
func (b *batch) validate(resp *ipamv1.AllocateResponse) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errBadReply)
	}
	if len(resp.GetSubnets()) != len(b.req.GetSubnets()) || len(resp.GetAddresses()) != len(b.req.GetAddresses()) {
		return bad("%d subnets and %d addresses answered, %d and %d asked", len(resp.GetSubnets()), len(resp.GetAddresses()), len(b.req.GetSubnets()), len(b.req.GetAddresses()))
	}
	for i, r := range resp.GetSubnets() {
		q := b.req.GetSubnets()[i]
		if r.GetNetworkId() != q.GetNetworkId() {
			return bad("subnets[%d] names network %q, not %q", i, r.GetNetworkId(), q.GetNetworkId())
		}
		if r.GetError() != "" {
			continue
		}
		p, err := netip.ParsePrefix(r.GetSubnet())
		switch {
		case err != nil || !p.Addr().Is4() || p.Masked() != p:
			return bad("subnets[%d]: %q is not an IPv4 subnet", i, r.GetSubnet())
		case q.GetSubnet() != "" && q.GetSubnet() != p.String():
			return bad("subnets[%d]: %s given, %s asked for", i, p, q.GetSubnet())
		case int(r.GetNodePrefixLen()) <= p.Bits() || r.GetNodePrefixLen() > 30:
			return bad("subnets[%d]: node_prefix_len %d does not slice %s", i, r.GetNodePrefixLen(), p)
		case q.GetNodePrefixLen() != 0 && q.GetNodePrefixLen() != r.GetNodePrefixLen():
			return bad("subnets[%d]: node_prefix_len %d given, %d asked for", i, r.GetNodePrefixLen(), q.GetNodePrefixLen())
		}
	}
	seen := map[netip.Addr]string{}
	for i, r := range resp.GetAddresses() {
		q := b.req.GetAddresses()[i]
		if r.GetNetworkId() != q.GetNetworkId() || r.GetOwner() != q.GetOwner() || r.GetNodeId() != q.GetNodeId() {
			return bad("addresses[%d] names %s on %s (node %q), not %s on %s (node %q)", i, r.GetOwner(), r.GetNetworkId(), r.GetNodeId(), q.GetOwner(), q.GetNetworkId(), q.GetNodeId())
		}
		if r.GetError() != "" {
			continue
		}
		subnet := b.subnets[q.GetNetworkId()]
		ap, err := netip.ParsePrefix(r.GetAddr())
		if err != nil || ap.Bits() != subnet.Bits() || !subnet.Contains(ap.Addr()) {
			return bad("addresses[%d]: %q is not an address of %s with its prefix length", i, r.GetAddr(), subnet)
		}
		if other, ok := seen[ap.Addr()]; ok {
			return bad("addresses[%d]: %s given to %s and %s", i, ap.Addr(), other, q.GetOwner())
		}
		seen[ap.Addr()] = q.GetOwner()
		if q.GetNodeId() == "" {
			continue
		}
		ns, err := netip.ParsePrefix(r.GetNodeSubnet())
		gw, gerr := netip.ParseAddr(r.GetGateway())
		if err != nil || ns.Masked() != ns || !subnet.Contains(ns.Addr()) || ns.Bits() <= subnet.Bits() || !ns.Contains(ap.Addr()) {
			return bad("addresses[%d]: node_subnet %q is not a slice of %s holding %s", i, r.GetNodeSubnet(), subnet, ap.Addr())
		}
		if gerr != nil || !ns.Contains(gw) || gw == ap.Addr() {
			return bad("addresses[%d]: gateway %q is not another address of %s", i, r.GetGateway(), ns)
		}
	}
	return nil
}

// commit records a batch's allocations, for the objects that still want
// them, together with the batch's store-only changes. Allocations it could
// not record are released.
func (a *Allocator) commit(ctx context.Context, w *work, b *batch, resp *ipamv1.AllocateResponse) error {
	var (
		unused  []*ipamv1.AddressResult
		unusedN []string
		refused []string
		err     error
	)
	for range commitAttempts {
		err = a.raft.Update(ctx, func(tx *state.Tx) error {
			unused, unusedN, refused = unused[:0], unusedN[:0], refused[:0]
			c := newChanges(tx)
			for _, r := range resp.GetSubnets() {
				if r.GetError() != "" {
					refused = append(refused, fmt.Sprintf("network %s: %s", r.GetNetworkId(), r.GetError()))
					continue
				}
				n := c.network(r.GetNetworkId())
				if n == nil || n.GetSubnet() != "" {
					if n == nil {
						unusedN = append(unusedN, r.GetNetworkId())
					}
					continue
				}
				n.Subnet, n.NodePrefixLen = r.GetSubnet(), r.GetNodePrefixLen()
			}
			for _, r := range resp.GetAddresses() {
				if r.GetError() != "" {
					refused = append(refused, fmt.Sprintf("%s on network %s: %s", r.GetOwner(), r.GetNetworkId(), r.GetError()))
					c.refuse(r)
					continue
				}
				if !c.record(r) {
					unused = append(unused, r)
				}
			}
			for _, id := range b.dropSvcs {
				c.dropVIPs(id)
			}
			for _, node := range b.gone {
				c.dropSlices(node)
			}
			c.fillServiceVIPs()
			return c.write()
		})
		if !errors.Is(err, state.ErrVersionConflict) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("commit allocations: %w", err)
	}
	for _, r := range unused {
		w.releaseAddr(r.GetNetworkId(), r.GetOwner())
	}
	w.rel.Networks = append(w.rel.Networks, unusedN...)
	if len(refused) > 0 {
		for _, r := range resp.GetSubnets() {
			if r.GetError() != "" {
				w.blockedNets[r.GetNetworkId()] = true
			}
		}
		for _, r := range resp.GetAddresses() {
			if r.GetError() != "" {
				if r.GetNodeId() == "" {
					w.blockedSvcs[r.GetOwner()] = true
				} else {
					w.blockedTasks[r.GetOwner()] = true
				}
			}
		}
		a.log.Warn("ipam plugin refused allocations; retrying later", "refused", len(refused), "first", refused[0])
	}
	a.log.Debug("allocations committed", "subnets", len(resp.GetSubnets()), "addresses", len(resp.GetAddresses()), "not_recorded", len(unused))
	return nil
}

// changes are the objects a commit modifies: clones, written at the end.
type changes struct {
	tx       *state.Tx
	networks map[string]*objectv1.Network
	services map[string]*objectv1.Service
	tasks    map[string]*objectv1.Task
	order    []string // "n"+id, "s"+id, "t"+id, in first-touch order
}

func newChanges(tx *state.Tx) *changes {
	return &changes{tx: tx, networks: map[string]*objectv1.Network{}, services: map[string]*objectv1.Service{}, tasks: map[string]*objectv1.Task{}}
}

func (c *changes) network(id string) *objectv1.Network {
	if n, ok := c.networks[id]; ok {
		return n
	}
	cur := c.tx.Network(id)
	if cur == nil {
		return nil
	}
	n := proto.Clone(cur).(*objectv1.Network)
	c.networks[id] = n
	c.order = append(c.order, "n"+id)
	return n
}

func (c *changes) service(id string) *objectv1.Service {
	if s, ok := c.services[id]; ok {
		return s
	}
	cur := c.tx.Service(id)
	if cur == nil {
		return nil
	}
	s := proto.Clone(cur).(*objectv1.Service)
	c.services[id] = s
	c.order = append(c.order, "s"+id)
	return s
}

func (c *changes) task(id string) *objectv1.Task {
	if t, ok := c.tasks[id]; ok {
		return t
	}
	cur := c.tx.Task(id)
	if cur == nil {
		return nil
	}
	t := proto.Clone(cur).(*objectv1.Task)
	c.tasks[id] = t
	c.order = append(c.order, "t"+id)
	return t
}

// record writes one address to its owner, if it still wants it; it
// reports false if not (the owner is gone, changed, or holds another).
func (c *changes) record(r *ipamv1.AddressResult) bool {
	net := c.tx.Network(r.GetNetworkId())
	if net == nil || net.GetSubnet() == "" {
		return false
	}
	if r.GetNodeId() == "" {
		cur := c.tx.Service(r.GetOwner())
		if cur == nil || !wantsVIP(cur, r.GetNetworkId()) {
			return false
		}
		if have := vipOf(cur, r.GetNetworkId()); have != "" {
			return have == r.GetAddr()
		}
		s := c.service(r.GetOwner())
		if vipOf(s, r.GetNetworkId()) != "" {
			return false
		}
		s.VirtualIps = append(s.VirtualIps, &objectv1.VirtualIP{NetworkId: r.GetNetworkId(), Addr: r.GetAddr()})
		return true
	}
	cur := c.tx.Task(r.GetOwner())
	if cur == nil || cur.GetNodeId() != r.GetNodeId() || !needsAddress(cur) {
		return cur != nil && attachment(cur, r.GetNetworkId()).GetAddr() == r.GetAddr()
	}
	spec := specNetwork(cur, r.GetNetworkId())
	if spec == nil {
		return false
	}
	if have := attachment(cur, r.GetNetworkId()).GetAddr(); have != "" {
		return have == r.GetAddr()
	}
	n := c.network(r.GetNetworkId())
	if have := n.GetNodeSubnets()[r.GetNodeId()]; have != "" && have != r.GetNodeSubnet() {
		// The plugin's slice is not the recorded one: it is out of step
		// with the store. Not recorded; the next restore fixes it.
		return false
	}
	if n.NodeSubnets == nil {
		n.NodeSubnets = map[string]string{}
	}
	n.NodeSubnets[r.GetNodeId()] = r.GetNodeSubnet()
	t := c.task(r.GetOwner())
	if attachment(t, r.GetNetworkId()).GetAddr() != "" {
		return false
	}
	at := &objectv1.NetworkAttachment{
		NetworkId: r.GetNetworkId(), NetworkName: net.GetSpec().GetAnnotations().GetName(),
		Addr: r.GetAddr(), Subnet: net.GetSubnet(), NodeSubnet: r.GetNodeSubnet(), Gateway: r.GetGateway(),
		Aliases: spec.GetAliases(),
	}
	if old := attachment(t, r.GetNetworkId()); old != nil {
		proto.Reset(old)
		proto.Merge(old, at)
	} else {
		t.Networks = append(t.Networks, at)
	}
	return true
}

// refuse tells a task's owner why it waits, in its status message.
func (c *changes) refuse(r *ipamv1.AddressResult) {
	if r.GetNodeId() == "" {
		return
	}
	cur := c.tx.Task(r.GetOwner())
	if cur == nil || !needsAddress(cur) {
		return
	}
	msg := fmt.Sprintf("waiting for an address on network %s: %s", r.GetNetworkId(), r.GetError())
	if n := c.tx.Network(r.GetNetworkId()); n != nil {
		msg = fmt.Sprintf("waiting for an address on network %s: %s", n.GetSpec().GetAnnotations().GetName(), r.GetError())
	}
	if cur.GetStatus().GetMessage() == msg {
		return
	}
	t := c.task(r.GetOwner())
	if t.Status == nil {
		t.Status = &objectv1.TaskStatus{}
	}
	t.Status.Message = msg
}

// dropVIPs removes a service's virtual IPs on networks it left.
func (c *changes) dropVIPs(id string) {
	cur := c.tx.Service(id)
	if cur == nil {
		return
	}
	keep := func(v *objectv1.VirtualIP) bool { return wantsVIP(cur, v.GetNetworkId()) }
	if !slices.ContainsFunc(cur.GetVirtualIps(), func(v *objectv1.VirtualIP) bool { return !keep(v) }) {
		return
	}
	s := c.service(id)
	s.VirtualIps = slices.DeleteFunc(s.VirtualIps, func(v *objectv1.VirtualIP) bool { return !keep(v) })
}

// wantsVIP reports whether service s has a virtual IP on a network: it
// joins the network, in endpoint mode vip (the default). A service in mode
// dnsrr has none, as in swarm mode; switching it to dnsrr releases them.
func wantsVIP(s *objectv1.Service, networkID string) bool {
	return s.GetSpec().GetEndpoint().GetMode() != objectv1.EndpointMode_ENDPOINT_MODE_DNSRR &&
		joins(s.GetSpec().GetTask().GetNetworks(), networkID)
}

// fillServiceVIPs copies each service's virtual IPs into its live tasks'
// attachments (NetworkAttachment.service_vip), for the tasks this commit
// changes and, for the services it changes, for all their tasks: nodes
// learn a service's VIP from the tasks they run (see kernel/node), and a
// task may get its address before or after its service gets its VIP.
func (c *changes) fillServiceVIPs() {
	view := func(id string) *objectv1.Service {
		if s, ok := c.services[id]; ok {
			return s
		}
		return c.tx.Service(id)
	}
	fill := func(t *objectv1.Task, s *objectv1.Service) bool {
		changed := false
		for _, a := range t.GetNetworks() {
			if v := vipOf(s, a.GetNetworkId()); a.GetAddr() != "" && a.GetServiceVip() != v {
				a.ServiceVip = v
				changed = true
			}
		}
		return changed
	}
	needs := func(t *objectv1.Task, s *objectv1.Service) bool {
		for _, a := range t.GetNetworks() {
			if a.GetAddr() != "" && a.GetServiceVip() != vipOf(s, a.GetNetworkId()) {
				return true
			}
		}
		return false
	}
	for _, t := range c.tasks {
		fill(t, view(t.GetServiceId()))
	}
	for id, s := range c.services {
		for _, cur := range c.tx.TasksByService(id) {
			if cur.GetStatus().GetState() > objectv1.TaskState_TASK_STATE_RUNNING || !needs(cur, s) {
				continue
			}
			fill(c.task(cur.GetId()), s)
		}
	}
}

// dropSlices removes a removed node's slices from the networks where no
// task on it holds an address any more.
func (c *changes) dropSlices(node string) {
	held := map[string]bool{}
	for _, t := range c.tx.TasksByNode(node) {
		if Holds(t) {
			for _, a := range t.GetNetworks() {
				held[a.GetNetworkId()] = true
			}
		}
	}
	for _, n := range c.tx.Networks() {
		if _, ok := n.GetNodeSubnets()[node]; ok && !held[n.Id] {
			delete(c.network(n.Id).NodeSubnets, node)
		}
	}
}

// write writes every modified object.
func (c *changes) write() error {
	for _, k := range c.order {
		id := k[1:]
		var err error
		switch k[0] {
		case 'n':
			err = c.tx.UpdateNetwork(c.networks[id])
		case 's':
			err = c.tx.UpdateService(c.services[id])
		case 't':
			err = c.tx.UpdateTask(c.tasks[id])
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func joins(nets []*objectv1.NetworkAttachmentConfig, id string) bool {
	return slices.ContainsFunc(nets, func(n *objectv1.NetworkAttachmentConfig) bool { return n.GetTarget() == id })
}

func specNetwork(t *objectv1.Task, id string) *objectv1.NetworkAttachmentConfig {
	for _, n := range t.GetSpec().GetNetworks() {
		if n.GetTarget() == id {
			return n
		}
	}
	return nil
}
