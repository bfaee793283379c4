package controlapi

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/allocator"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// Bounds of networks.
const (
	// minNodePrefixLen and maxNodePrefixLen bound a node's slice of a
	// network: a /30 holds a gateway and one task between its network and
	// broadcast addresses; a /8 slice is already more than a node runs.
	minNodePrefixLen = 8
	maxNodePrefixLen = 30
	// defaultNodePrefixLen is what a node_prefix_len of 0 means: 253 tasks
	// per node, the common size of a container bridge.
	defaultNodePrefixLen = 24
	// maxNetworksPerTask bounds a task's interfaces; each is a veth pair
	// and routes on its node.
	maxNetworksPerTask = 16
	// maxAliases bounds a task's extra names on one network: they travel
	// in each of its endpoints through the workers' gossip, where an
	// endpoint must fit one packet (kernel/gossip bounds them at 8 too).
	maxAliases = 8
)

// ValidateNetworkSpec checks a network spec. It returns nil or
// sdk.FieldErrors naming every bad field, rooted at "spec.".
func ValidateNetworkSpec(spec *objectv1.NetworkSpec) error {
	var fe sdk.FieldErrors
	if spec == nil {
		fe.Add("spec", "is required")
		return fe.Err()
	}
	validateSpecSize(&fe, spec)
	validateAnnotations(&fe, "spec.annotations", spec.GetAnnotations(), true)
	nodeBits := int(spec.GetNodePrefixLen())
	if nodeBits != 0 && (nodeBits < minNodePrefixLen || nodeBits > maxNodePrefixLen) {
		fe.Add("spec.node_prefix_len", "must be 0 (meaning %d) or between %d and %d, got %d", defaultNodePrefixLen, minNodePrefixLen, maxNodePrefixLen, nodeBits)
		nodeBits = 0
	}
	if nodeBits == 0 {
		nodeBits = defaultNodePrefixLen
	}
	if s := spec.GetSubnet(); s != "" {
		p, err := netip.ParsePrefix(s)
		switch {
		case err != nil:
			fe.Add("spec.subnet", "must be an IPv4 subnet in CIDR form such as 10.200.0.0/16, got %s", quote(s))
		case !p.Addr().Is4():
			fe.Add("spec.subnet", "must be IPv4, got %s", quote(s))
		case p.Masked() != p:
			fe.Add("spec.subnet", "has host bits set: the subnet is %s, got %s", p.Masked(), quote(s))
		case p.Bits() >= nodeBits:
			fe.Add("spec.subnet", "must be larger than a node's slice (/%d, spec.node_prefix_len): it holds a slice for virtual IPs and one per node, got /%d", nodeBits, p.Bits())
		}
	}
	return capped(fe).Err()
}

// validateNetworks checks a task's network attachments (before they are
// resolved to IDs, see resolveNetworks).
func validateNetworks(fe *sdk.FieldErrors, field string, nets []*objectv1.NetworkAttachmentConfig) {
	if len(nets) > maxNetworksPerTask {
		fe.Add(field, "must hold at most %d networks, got %d", maxNetworksPerTask, len(nets))
		return
	}
	for i, n := range nets {
		f := fmt.Sprintf("%s[%d]", field, i)
		if n.GetTarget() == "" {
			fe.Add(f+".target", "is required: a network name or ID")
		}
		if len(n.GetAliases()) > maxAliases {
			fe.Add(f+".aliases", "must hold at most %d names, got %d", maxAliases, len(n.GetAliases()))
			continue
		}
		for j, a := range n.GetAliases() {
			if len(a) == 0 || len(a) > maxNameLen || !nameRE.MatchString(a) {
				fe.Add(fmt.Sprintf("%s.aliases[%d]", f, j), "must be 1 to %d letters, digits, '_', '.' and '-', starting with a letter or digit, got %s", maxNameLen, quote(a))
			}
		}
	}
}

// resolveNetworks replaces each network target of spec (a name, ID or ID
// prefix) by the network's ID, so that tasks and the allocator refer to
// networks by ID and a network cannot be renamed from under a service.
func resolveNetworks(tx *state.ReadTx, spec *objectv1.ServiceSpec) error {
	var fe sdk.FieldErrors
	seen := map[string]int{}
	for i, n := range spec.GetTask().GetNetworks() {
		f := fmt.Sprintf("spec.task.networks[%d].target", i)
		net, err := tx.LookupNetwork(n.GetTarget())
		if err != nil {
			fe.Add(f, "%s", err.Error())
			continue
		}
		if j, ok := seen[net.Id]; ok {
			fe.Add(f, "network %s is joined twice, also by spec.task.networks[%d]", net.GetSpec().GetAnnotations().GetName(), j)
			continue
		}
		seen[net.Id] = i
		n.Target = net.Id
	}
	return fe.Err()
}

func (s *Server) CreateNetwork(ctx context.Context, req *controlv1.CreateNetworkRequest) (*controlv1.CreateNetworkResponse, error) {
	resp := &controlv1.CreateNetworkResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_CreateNetwork_FullMethodName, req, resp); fwd {
		return resp, err
	}
	spec := proto.Clone(req.GetSpec()).(*objectv1.NetworkSpec)
	if req.GetSpec() == nil {
		spec = nil
	}
	if err := ValidateNetworkSpec(spec); err != nil {
		return nil, grpcErr(err)
	}
	if spec.GetSubnet() != "" {
		spec.Subnet = netip.MustParsePrefix(spec.GetSubnet()).String()
	}
	net := &objectv1.Network{Id: newID(), Spec: spec}
	w, err := s.update(ctx, func(tx *state.Tx) error {
		name := spec.GetAnnotations().GetName()
		if tx.NetworkByName(name) != nil {
			return fmt.Errorf("network %q: %w", name, sdk.ErrAlreadyExists)
		}
		if spec.GetSubnet() != "" {
			want := netip.MustParsePrefix(spec.GetSubnet())
			for _, other := range tx.Networks() {
				for _, have := range []string{other.GetSubnet(), other.GetSpec().GetSubnet()} {
					if p, err := netip.ParsePrefix(have); err == nil && p.Overlaps(want) {
						return sdk.FieldErrors{{Field: "spec.subnet", Message: fmt.Sprintf("%s overlaps network %s's subnet %s", want, other.GetSpec().GetAnnotations().GetName(), p)}}
					}
				}
			}
		}
		return tx.CreateNetwork(net)
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	if w.Replayed {
		net = &objectv1.Network{Id: w.ObjectID, Spec: spec}
	}
	s.view(func(tx *state.ReadTx) { resp.Network = tx.Network(net.Id) })
	if resp.Network == nil {
		// Removed since: the reply still says what this call did.
		resp.Network = committed(net, w.Index)
	}
	s.log.Info("network created", "network_id", net.Id, "name", spec.GetAnnotations().GetName(), "subnet", spec.GetSubnet())
	return resp, nil
}

func (s *Server) GetNetwork(ctx context.Context, req *controlv1.GetNetworkRequest) (*controlv1.GetNetworkResponse, error) {
	resp := &controlv1.GetNetworkResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_GetNetwork_FullMethodName, req, resp); fwd {
		return resp, err
	}
	if req.GetRef() == "" {
		return nil, grpcErr(refRequired())
	}
	var err error
	if rerr := s.read(ctx, func(tx *state.ReadTx) { resp.Network, err = tx.LookupNetwork(req.GetRef()) }); rerr != nil {
		return nil, grpcErr(rerr)
	}
	return resp, grpcErr(err)
}

func (s *Server) ListNetworks(ctx context.Context, req *controlv1.ListNetworksRequest) (*controlv1.ListNetworksResponse, error) {
	resp := &controlv1.ListNetworksResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_ListNetworks_FullMethodName, req, resp); fwd {
		return resp, err
	}
	names := map[string]bool{}
	for _, n := range req.GetNames() {
		names[n] = true
	}
	err := s.read(ctx, func(tx *state.ReadTx) {
		for _, n := range tx.Networks() {
			if (len(names) == 0 || names[n.GetSpec().GetAnnotations().GetName()]) && labelsMatch(n.GetSpec().GetAnnotations().GetLabels(), req.GetLabelSelector()) {
				resp.Networks = append(resp.Networks, n)
			}
		}
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	return resp, nil
}

// maxUsersListed bounds how many users a refused RemoveNetwork names.
const maxUsersListed = 5

func (s *Server) RemoveNetwork(ctx context.Context, req *controlv1.RemoveNetworkRequest) (*controlv1.RemoveNetworkResponse, error) {
	resp := &controlv1.RemoveNetworkResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_RemoveNetwork_FullMethodName, req, resp); fwd {
		return resp, err
	}
	if req.GetRef() == "" {
		return nil, grpcErr(refRequired())
	}
	var id string
	w, err := s.update(ctx, func(tx *state.Tx) error {
		cur, err := tx.LookupNetwork(req.GetRef())
		if err != nil {
			return err
		}
		id = cur.Id
		name := cur.GetSpec().GetAnnotations().GetName()
		// A network goes only once nothing uses it: its subnet is then
		// released, and given to another network, while no container of
		// it may still run.
		var services, tasks []string
		for _, svc := range tx.Services() {
			if joins(svc.GetSpec().GetTask().GetNetworks(), id) {
				services = append(services, svc.GetSpec().GetAnnotations().GetName())
			}
		}
		if len(services) > 0 {
			return fmt.Errorf("network %s is joined by %d services (%s); remove them or update them to leave it first: %w",
				name, len(services), listSome(services), sdk.ErrFailedPrecondition)
		}
		for _, t := range tx.Tasks() {
			if allocator.Holds(t) && (joins(t.GetSpec().GetNetworks(), id) || hasAttachment(t, id)) {
				tasks = append(tasks, t.Id)
			}
		}
		if len(tasks) > 0 {
			return fmt.Errorf("network %s is used by %d tasks that have not ended (%s); retry once they have stopped: %w",
				name, len(tasks), listSome(tasks), sdk.ErrFailedPrecondition)
		}
		return tx.DeleteNetwork(id)
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	if w.Replayed {
		id = w.ObjectID
	}
	s.log.Info("network removed", "network_id", id)
	return resp, nil
}

func joins(nets []*objectv1.NetworkAttachmentConfig, id string) bool {
	for _, n := range nets {
		if n.GetTarget() == id {
			return true
		}
	}
	return false
}

func hasAttachment(t *objectv1.Task, id string) bool {
	for _, a := range t.GetNetworks() {
		if a.GetNetworkId() == id {
			return true
		}
	}
	return false
}

// listSome joins the first few of names, sorted, saying how many more.
func listSome(names []string) string {
	sort.Strings(names)
	out := strings.Join(names[:min(len(names), maxUsersListed)], ", ")
	if len(names) > maxUsersListed {
		out += fmt.Sprintf(" and %d more", len(names)-maxUsersListed)
	}
	return out
}
