// Package ipamtest is the conformance kit for IPAM plugins. A plugin's whole
// conformance test is one call:
//
//	func TestConformance(t *testing.T) {
//		ipamtest.Run(t, func() ipam.IPAM { return &myIPAM{} })
//	}
//
// Run plays the kernel's allocator stage against fresh instances, twice:
// calling them directly (subtests under "InProcess") and through the real
// gRPC glue, ipam.Plugin on one end and ipam.Client on the other (subtests
// under "GRPC"). RunBinary runs the same checks against a plugin binary, in
// any language, started as the kernel starts it. Every allocation any check gets is also held to the rules
// any answer must keep: one result per item, in order, naming its item; an
// address in CIDR form with its network's prefix length, inside the node's
// slice (or outside every node's slice, for a virtual IP), never the slice's
// first (gateway) or last address; and never an address, slice or subnet
// that something else holds.
//
// The checks:
//
//   - Configure: an empty config is accepted; an unknown key is an
//     InvalidArgument naming it.
//   - RefusesUnrestored: Allocate and Release before any Restore, or naming
//     another restore, fail with FailedPrecondition.
//   - DefaultSubnets, RequestedSubnets: networks get distinct subnets; a
//     subnet asked for is given, one overlapping another network's is an
//     item error, not a call error.
//   - UniqueAddresses: a few thousand tasks on many nodes and a hundred
//     services get distinct addresses from per-node slices.
//   - SameOwnerSameAnswer: asking again gives the same allocation.
//   - ReleaseAndReuse, Exhaustion: a full slice is an item error; a released
//     address can be given again; a released network's subnet too.
//   - RestoreHoldsExactly: after Restore the plugin avoids everything the
//     restore carries and has forgotten what it held before.
//   - RestoreRejectsInconsistent: overlapping subnets, an address outside
//     its slice, an address held twice are InvalidArgument.
//   - Cancellation: a cancelled ctx makes calls return an error.
package ipamtest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/hashicorp/go-plugin"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/ipam"
	"github.com/shoalhq/shoal/sdk/plugintest"
	ipamv1 "github.com/shoalhq/shoal/sdk/proto/shoal/ipam/v1"
)

// Run checks that the IPAMs factory makes keep the IPAM contract. factory
// must return a new, independent instance on every call, as a freshly
// started plugin process would be; Run calls Configure (when the instance is
// an ipam.Configurer) with an empty config first, as the kernel does.
func Run(t *testing.T, factory func() ipam.IPAM) {
	t.Helper()
	plugintest.BothWays(t, func(t *testing.T, overGRPC bool) {
		plugintest.RunChecks(t, checks, &harness{Source: plugintest.Source[ipam.IPAM]{Factory: factory, OverGRPC: overGRPC}})
	})
}

// RunBinary checks that the IPAM plugin binary at path keeps the IPAM
// contract, whatever language it is written in: each check starts the binary
// afresh, as the kernel starts a plugin (go-plugin's handshake, gRPC with
// mutual TLS, sdk.ProtocolVersion). The plugin's stderr goes to the test log.
func RunBinary(t *testing.T, path string) {
	t.Helper()
	plugintest.RunChecks(t, checks, &harness{Source: plugintest.Source[ipam.IPAM]{Binary: path}})
}

var checks = []plugintest.Check[*harness]{
	{Name: "Configure", Run: checkConfigure},
	{Name: "RefusesUnrestored", Run: checkRefusesUnrestored},
	{Name: "DefaultSubnets", Run: checkDefaultSubnets},
	{Name: "RequestedSubnets", Run: checkRequestedSubnets},
	{Name: "UniqueAddresses", Run: checkUniqueAddresses},
	{Name: "SameOwnerSameAnswer", Run: checkSameOwnerSameAnswer},
	{Name: "ReleaseAndReuse", Run: checkReleaseAndReuse},
	{Name: "Exhaustion", Run: checkExhaustion},
	{Name: "RestoreHoldsExactly", Run: checkRestoreHoldsExactly},
	{Name: "RestoreRejectsInconsistent", Run: checkRestoreRejectsInconsistent},
	{Name: "Cancellation", Run: checkCancellation},
}

type harness struct {
	plugintest.Source[ipam.IPAM]
}

// instance is one fresh IPAM as a check sees it.
type instance struct {
	ipam.IPAM
	configurer       ipam.Configurer
	implConfigurable bool
}

func (h *harness) fresh(t *testing.T) instance {
	t.Helper()
	in := plugintest.Fresh[ipam.IPAM, ipam.Configurer](t, h.Source, sdk.KindIPAM, func(impl ipam.IPAM) plugin.Plugin { return &ipam.Plugin{Impl: impl} })
	return instance{IPAM: in.Plugin, configurer: in.Configurer, implConfigurable: in.ImplConfigurable}
}

// open returns a configured IPAM restored to an empty state with
// restore_id 1, and the ledger that checks its answers.
func (h *harness) open(t *testing.T) (instance, *ledger) {
	t.Helper()
	in := h.fresh(t)
	if in.configurer != nil {
		if err := in.configurer.Configure(t.Context(), nil); err != nil {
			t.Fatalf("Configure(empty config) = %v, want nil", err)
		}
	}
	if _, err := in.Restore(t.Context(), &ipamv1.RestoreRequest{RestoreId: 1}); err != nil {
		t.Fatalf("Restore(empty, restore_id 1) = %v, want nil", err)
	}
	return in, newLedger(1)
}

func checkConfigure(t *testing.T, h *harness) {
	in := h.fresh(t)
	if in.configurer == nil {
		return
	}
	if err := in.configurer.Configure(t.Context(), nil); err != nil {
		t.Errorf("Configure(empty) = %v, want nil", err)
	}
	err := in.configurer.Configure(t.Context(), []byte("no_such_key_ipamtest = 1\n"))
	if err == nil || !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Fatalf("Configure(unknown key) = %v, want an InvalidArgument error", err)
	}
	var fe sdk.FieldErrors
	if !errors.As(err, &fe) || len(fe) == 0 || !containsField(fe, "no_such_key_ipamtest") {
		t.Errorf("Configure(unknown key) = %v, want field errors naming no_such_key_ipamtest", err)
	}
}

func containsField(fe sdk.FieldErrors, name string) bool {
	for _, f := range fe {
		if len(f.Field) >= len(name) && f.Field[len(f.Field)-len(name):] == name {
			return true
		}
	}
	return false
}

func checkRefusesUnrestored(t *testing.T, h *harness) {
	in := h.fresh(t)
	if in.configurer != nil {
		if err := in.configurer.Configure(t.Context(), nil); err != nil {
			t.Fatal(err)
		}
	}
	req := &ipamv1.AllocateRequest{RestoreId: 7, Subnets: []*ipamv1.SubnetRequest{{NetworkId: "n1"}}}
	if _, err := in.Allocate(t.Context(), req); !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Errorf("Allocate before any Restore = %v, want FailedPrecondition", err)
	}
	if _, err := in.Release(t.Context(), &ipamv1.ReleaseRequest{RestoreId: 7, Networks: []string{"n1"}}); !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Errorf("Release before any Restore = %v, want FailedPrecondition", err)
	}
	if _, err := in.Restore(t.Context(), &ipamv1.RestoreRequest{RestoreId: 3}); err != nil {
		t.Fatalf("Restore(empty) = %v", err)
	}
	if _, err := in.Allocate(t.Context(), req); !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Errorf("Allocate naming restore 7 after restore 3 = %v, want FailedPrecondition", err)
	}
	req.RestoreId = 3
	if _, err := in.Allocate(t.Context(), req); err != nil {
		t.Errorf("Allocate naming restore 3 after restore 3 = %v, want nil", err)
	}
}

func checkDefaultSubnets(t *testing.T, h *harness) {
	in, l := h.open(t)
	var reqs []*ipamv1.SubnetRequest
	for i := range 4 {
		reqs = append(reqs, &ipamv1.SubnetRequest{NetworkId: fmt.Sprintf("net-%d", i)})
	}
	resp := l.allocate(t, in, reqs, nil)
	for _, r := range resp.GetSubnets() {
		if r.GetError() != "" {
			t.Errorf("network %s: error %q, want a subnet from the default pool", r.GetNetworkId(), r.GetError())
		}
	}
}

func checkRequestedSubnets(t *testing.T, h *harness) {
	in, l := h.open(t)
	resp := l.allocate(t, in, []*ipamv1.SubnetRequest{
		{NetworkId: "a", Subnet: "172.30.0.0/16", NodePrefixLen: 24},
		{NetworkId: "b", Subnet: "172.31.8.0/22", NodePrefixLen: 26},
		{NetworkId: "c", Subnet: "172.30.128.0/17"},
	}, nil)
	want := []string{"172.30.0.0/16", "172.31.8.0/22", ""}
	for i, r := range resp.GetSubnets() {
		if r.GetSubnet() != want[i] {
			t.Errorf("subnet %d (network %s) = %q (error %q), want %q", i, r.GetNetworkId(), r.GetSubnet(), r.GetError(), want[i])
		}
	}
	if e := resp.GetSubnets()[2].GetError(); e == "" {
		t.Errorf("network c asked for 172.30.128.0/17 inside network a's 172.30.0.0/16: no error")
	}
	if n := resp.GetSubnets()[1].GetNodePrefixLen(); n != 26 {
		t.Errorf("network b's node_prefix_len = %d, want 26 as asked", n)
	}
}

func checkUniqueAddresses(t *testing.T, h *harness) {
	in, l := h.open(t)
	l.allocate(t, in, []*ipamv1.SubnetRequest{{NetworkId: "n1"}, {NetworkId: "n2", Subnet: "172.20.0.0/16", NodePrefixLen: 24}}, nil)
	var addrs []*ipamv1.AddressRequest
	for i := range 3000 {
		for _, n := range []string{"n1", "n2"} {
			addrs = append(addrs, &ipamv1.AddressRequest{NetworkId: n, Owner: fmt.Sprintf("task-%d", i), NodeId: fmt.Sprintf("node-%d", i%40)})
		}
	}
	for i := range 100 {
		addrs = append(addrs, &ipamv1.AddressRequest{NetworkId: "n1", Owner: fmt.Sprintf("svc-%d", i)})
	}
	// In batches, as the kernel sends them.
	for len(addrs) > 0 {
		n := min(len(addrs), 1000)
		resp := l.allocate(t, in, nil, addrs[:n])
		for _, r := range resp.GetAddresses() {
			if r.GetError() != "" {
				t.Fatalf("%s on %s (node %q): error %q, want an address (40 nodes of 75 tasks fit /24 slices)", r.GetOwner(), r.GetNetworkId(), r.GetNodeId(), r.GetError())
			}
		}
		addrs = addrs[n:]
	}
}

func checkSameOwnerSameAnswer(t *testing.T, h *harness) {
	in, l := h.open(t)
	l.allocate(t, in, []*ipamv1.SubnetRequest{{NetworkId: "n1", Subnet: "10.99.0.0/16"}}, nil)
	req := []*ipamv1.AddressRequest{{NetworkId: "n1", Owner: "t1", NodeId: "node-a"}, {NetworkId: "n1", Owner: "s1"}}
	first := l.allocate(t, in, nil, req)
	again := l.allocate(t, in, []*ipamv1.SubnetRequest{{NetworkId: "n1", Subnet: "10.99.0.0/16"}}, req)
	for i := range req {
		a, b := first.GetAddresses()[i], again.GetAddresses()[i]
		if a.GetAddr() != b.GetAddr() || a.GetNodeSubnet() != b.GetNodeSubnet() || a.GetGateway() != b.GetGateway() {
			t.Errorf("%s asked twice: %s then %s, want the same", req[i].GetOwner(), a.GetAddr(), b.GetAddr())
		}
	}
	if s := again.GetSubnets()[0]; s.GetSubnet() != "10.99.0.0/16" {
		t.Errorf("network n1 asked again: subnet %q (error %q), want 10.99.0.0/16", s.GetSubnet(), s.GetError())
	}
}

func checkExhaustion(t *testing.T, h *harness) {
	in, l := h.open(t)
	// A /29 in /30 slices: one virtual IP slice (2 addresses) and one node
	// slice (one task address between gateway and broadcast).
	l.allocate(t, in, []*ipamv1.SubnetRequest{{NetworkId: "tiny", Subnet: "10.98.0.0/29", NodePrefixLen: 30}}, nil)
	resp := l.allocate(t, in, nil, []*ipamv1.AddressRequest{
		{NetworkId: "tiny", Owner: "t1", NodeId: "a"},
		{NetworkId: "tiny", Owner: "t2", NodeId: "a"},
		{NetworkId: "tiny", Owner: "t3", NodeId: "b"},
		{NetworkId: "tiny", Owner: "s1"}, {NetworkId: "tiny", Owner: "s2"}, {NetworkId: "tiny", Owner: "s3"},
	})
	for i, wantErr := range []bool{false, true, true, false, false, true} {
		r := resp.GetAddresses()[i]
		if (r.GetError() != "") != wantErr {
			t.Errorf("%s (node %q) on a /29 in /30 slices: addr %q, error %q; want an error: %v", r.GetOwner(), r.GetNodeId(), r.GetAddr(), r.GetError(), wantErr)
		}
	}
}

func checkReleaseAndReuse(t *testing.T, h *harness) {
	in, l := h.open(t)
	l.allocate(t, in, []*ipamv1.SubnetRequest{{NetworkId: "tiny", Subnet: "10.98.0.0/29", NodePrefixLen: 30}}, nil)
	first := l.allocate(t, in, nil, []*ipamv1.AddressRequest{{NetworkId: "tiny", Owner: "t1", NodeId: "a"}})
	l.release(t, in, &ipamv1.ReleaseRequest{Addresses: []*ipamv1.AddressRelease{{NetworkId: "tiny", Owner: "t1"}}})
	second := l.allocate(t, in, nil, []*ipamv1.AddressRequest{{NetworkId: "tiny", Owner: "t2", NodeId: "a"}})
	if a, b := first.GetAddresses()[0].GetAddr(), second.GetAddresses()[0].GetAddr(); a == "" || a != b {
		t.Errorf("the only task address of a /30 slice, released by t1 (%q), then asked for by t2: %q (error %q)", a, b, second.GetAddresses()[0].GetError())
	}
	// A node's slice released frees it for another node.
	l.release(t, in, &ipamv1.ReleaseRequest{NodeSubnets: []*ipamv1.NodeSubnetRelease{{NetworkId: "tiny", NodeId: "a"}}})
	third := l.allocate(t, in, nil, []*ipamv1.AddressRequest{{NetworkId: "tiny", Owner: "t3", NodeId: "b"}})
	if r := third.GetAddresses()[0]; r.GetError() != "" {
		t.Errorf("node b after node a's slice was released: error %q, want the freed slice", r.GetError())
	}
	// A released network frees its subnet.
	l.release(t, in, &ipamv1.ReleaseRequest{Networks: []string{"tiny"}})
	again := l.allocate(t, in, []*ipamv1.SubnetRequest{{NetworkId: "other", Subnet: "10.98.0.0/29", NodePrefixLen: 30}}, nil)
	if r := again.GetSubnets()[0]; r.GetError() != "" {
		t.Errorf("10.98.0.0/29 after its network was released: error %q, want it given", r.GetError())
	}
}

func checkRestoreHoldsExactly(t *testing.T, h *harness) {
	in, l := h.open(t)
	// Held before the restore, and not in it: forgotten.
	l.allocate(t, in, []*ipamv1.SubnetRequest{{NetworkId: "gone", Subnet: "10.97.0.0/16"}}, nil)
	restore := &ipamv1.RestoreRequest{
		RestoreId: 2,
		Networks: []*ipamv1.NetworkState{{
			NetworkId: "n1", Subnet: "10.96.0.0/24", NodePrefixLen: 28,
			NodeSubnets: map[string]string{"a": "10.96.0.16/28", "b": "10.96.0.48/28"},
		}},
		Addresses: []*ipamv1.AddressState{
			{NetworkId: "n1", Owner: "t1", NodeId: "a", Addr: "10.96.0.18/24"},
			{NetworkId: "n1", Owner: "t2", NodeId: "a", Addr: "10.96.0.20/24"},
			{NetworkId: "n1", Owner: "s1", Addr: "10.96.0.1/24"},
		},
	}
	if _, err := in.Restore(t.Context(), restore); err != nil {
		t.Fatalf("Restore = %v, want nil", err)
	}
	*l = *newLedger(2)
	l.restore(restore)
	resp := l.allocate(t, in, []*ipamv1.SubnetRequest{{NetworkId: "new", Subnet: "10.97.0.0/16"}}, nil)
	if r := resp.GetSubnets()[0]; r.GetError() != "" {
		t.Errorf("10.97.0.0/16, held before a restore that does not carry it: error %q, want it given", r.GetError())
	}
	var addrs []*ipamv1.AddressRequest
	for i := range 12 {
		addrs = append(addrs, &ipamv1.AddressRequest{NetworkId: "n1", Owner: fmt.Sprintf("x%d", i), NodeId: "a"})
	}
	for i := range 10 {
		addrs = append(addrs, &ipamv1.AddressRequest{NetworkId: "n1", Owner: fmt.Sprintf("y%d", i), NodeId: fmt.Sprintf("node-%d", i)})
	}
	addrs = append(addrs, &ipamv1.AddressRequest{NetworkId: "n1", Owner: "s2"}, &ipamv1.AddressRequest{NetworkId: "n1", Owner: "t1", NodeId: "a"})
	resp = l.allocate(t, in, nil, addrs)
	// A /28 node slice has 13 task addresses; a holds 2: 11 of the 12 fit.
	errs := 0
	for _, r := range resp.GetAddresses()[:12] {
		if r.GetError() != "" {
			errs++
		}
	}
	if errs != 1 {
		t.Errorf("12 more tasks on node a, whose /28 holds 13 and 2 restored: %d errors, want 1", errs)
	}
	if r := resp.GetAddresses()[len(addrs)-1]; r.GetAddr() != "10.96.0.18/24" {
		t.Errorf("t1 asking for its restored address: %q (error %q), want 10.96.0.18/24", r.GetAddr(), r.GetError())
	}
}

func checkRestoreRejectsInconsistent(t *testing.T, h *harness) {
	in, _ := h.open(t)
	bad := map[string]*ipamv1.RestoreRequest{
		"overlapping subnets": {RestoreId: 5, Networks: []*ipamv1.NetworkState{
			{NetworkId: "a", Subnet: "10.1.0.0/16", NodePrefixLen: 24},
			{NetworkId: "b", Subnet: "10.1.2.0/24", NodePrefixLen: 26},
		}},
		"address outside its node's slice": {RestoreId: 5, Networks: []*ipamv1.NetworkState{
			{NetworkId: "a", Subnet: "10.1.0.0/16", NodePrefixLen: 24, NodeSubnets: map[string]string{"n": "10.1.1.0/24"}},
		}, Addresses: []*ipamv1.AddressState{{NetworkId: "a", Owner: "t", NodeId: "n", Addr: "10.1.2.5/16"}}},
		"address held twice": {RestoreId: 5, Networks: []*ipamv1.NetworkState{
			{NetworkId: "a", Subnet: "10.1.0.0/16", NodePrefixLen: 24, NodeSubnets: map[string]string{"n": "10.1.1.0/24"}},
		}, Addresses: []*ipamv1.AddressState{
			{NetworkId: "a", Owner: "t1", NodeId: "n", Addr: "10.1.1.5/16"},
			{NetworkId: "a", Owner: "t2", NodeId: "n", Addr: "10.1.1.5/16"},
		}},
		"not a CIDR": {RestoreId: 5, Networks: []*ipamv1.NetworkState{{NetworkId: "a", Subnet: "10.1.0.0", NodePrefixLen: 24}}},
	}
	for what, req := range bad {
		if _, err := in.Restore(t.Context(), req); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("Restore with %s = %v, want InvalidArgument", what, err)
		}
	}
}

func checkCancellation(t *testing.T, h *harness) {
	in, _ := h.open(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := in.Allocate(ctx, &ipamv1.AllocateRequest{RestoreId: 1, Subnets: []*ipamv1.SubnetRequest{{NetworkId: "n"}}}); err == nil {
		t.Errorf("Allocate with a cancelled ctx = nil error, want one")
	}
}

// ledger is what the kernel would have recorded: every allocation given,
// checked against the contract as it comes.
type ledger struct {
	restoreID uint64
	nets      map[string]netip.Prefix
	nodeBits  map[string]int
	slices    map[string]map[string]netip.Prefix // network -> node -> slice
	owners    map[string]map[string]string       // network -> owner -> addr
	addrs     map[netip.Addr]string              // addr -> "network/owner"
}

func newLedger(restoreID uint64) *ledger {
	return &ledger{
		restoreID: restoreID, nets: map[string]netip.Prefix{}, nodeBits: map[string]int{},
		slices: map[string]map[string]netip.Prefix{}, owners: map[string]map[string]string{},
		addrs: map[netip.Addr]string{},
	}
}

func (l *ledger) restore(req *ipamv1.RestoreRequest) {
	for _, n := range req.GetNetworks() {
		l.nets[n.GetNetworkId()] = netip.MustParsePrefix(n.GetSubnet())
		l.nodeBits[n.GetNetworkId()] = int(n.GetNodePrefixLen())
		l.slices[n.GetNetworkId()] = map[string]netip.Prefix{}
		l.owners[n.GetNetworkId()] = map[string]string{}
		for node, s := range n.GetNodeSubnets() {
			l.slices[n.GetNetworkId()][node] = netip.MustParsePrefix(s)
		}
	}
	for _, a := range req.GetAddresses() {
		l.owners[a.GetNetworkId()][a.GetOwner()] = a.GetAddr()
		l.addrs[netip.MustParsePrefix(a.GetAddr()).Addr()] = a.GetNetworkId() + "/" + a.GetOwner()
	}
}

// allocate sends one batch, checks every result against the contract and
// the ledger, and records the allocations.
func (l *ledger) allocate(t *testing.T, in ipam.IPAM, subnets []*ipamv1.SubnetRequest, addrs []*ipamv1.AddressRequest) *ipamv1.AllocateResponse {
	t.Helper()
	resp, err := in.Allocate(t.Context(), &ipamv1.AllocateRequest{RestoreId: l.restoreID, Subnets: subnets, Addresses: addrs})
	if err != nil {
		t.Fatalf("Allocate(%d subnets, %d addresses) = %v, want results", len(subnets), len(addrs), err)
	}
	if len(resp.GetSubnets()) != len(subnets) || len(resp.GetAddresses()) != len(addrs) {
		t.Fatalf("Allocate(%d subnets, %d addresses) = %d and %d results, want one per item", len(subnets), len(addrs), len(resp.GetSubnets()), len(resp.GetAddresses()))
	}
	for i, r := range resp.GetSubnets() {
		if p := l.subnet(subnets[i], r); p != "" {
			t.Errorf("subnet result %d (network %s): %s", i, subnets[i].GetNetworkId(), p)
		}
	}
	for i, r := range resp.GetAddresses() {
		if p := l.address(addrs[i], r); p != "" {
			t.Errorf("address result %d (%s on network %s, node %q): %s", i, addrs[i].GetOwner(), addrs[i].GetNetworkId(), addrs[i].GetNodeId(), p)
		}
	}
	return resp
}

func (l *ledger) subnet(req *ipamv1.SubnetRequest, r *ipamv1.SubnetResult) string {
	if r.GetNetworkId() != req.GetNetworkId() {
		return fmt.Sprintf("names network %q", r.GetNetworkId())
	}
	if r.GetError() != "" {
		if r.GetSubnet() != "" {
			return "has both a subnet and an error"
		}
		return ""
	}
	p, err := netip.ParsePrefix(r.GetSubnet())
	if err != nil || p.Masked() != p {
		return fmt.Sprintf("subnet %q is not a CIDR subnet", r.GetSubnet())
	}
	if req.GetSubnet() != "" && req.GetSubnet() != p.String() {
		return fmt.Sprintf("subnet %s, but %s was asked for", p, req.GetSubnet())
	}
	if have, ok := l.nets[req.GetNetworkId()]; ok {
		if have != p {
			return fmt.Sprintf("subnet %s, but the network holds %s", p, have)
		}
		return ""
	}
	for id, other := range l.nets {
		if other.Overlaps(p) {
			return fmt.Sprintf("subnet %s overlaps network %s's %s", p, id, other)
		}
	}
	if int(r.GetNodePrefixLen()) <= p.Bits() || r.GetNodePrefixLen() > 32 {
		return fmt.Sprintf("node_prefix_len %d does not slice %s", r.GetNodePrefixLen(), p)
	}
	l.nets[req.GetNetworkId()] = p
	l.nodeBits[req.GetNetworkId()] = int(r.GetNodePrefixLen())
	l.slices[req.GetNetworkId()] = map[string]netip.Prefix{}
	l.owners[req.GetNetworkId()] = map[string]string{}
	return ""
}

func (l *ledger) address(req *ipamv1.AddressRequest, r *ipamv1.AddressResult) string {
	if r.GetNetworkId() != req.GetNetworkId() || r.GetOwner() != req.GetOwner() || r.GetNodeId() != req.GetNodeId() {
		return fmt.Sprintf("names %s on %q, node %q", r.GetOwner(), r.GetNetworkId(), r.GetNodeId())
	}
	if r.GetError() != "" {
		if r.GetAddr() != "" {
			return "has both an address and an error"
		}
		return ""
	}
	net, ok := l.nets[req.GetNetworkId()]
	if !ok {
		return "an address on a network without a subnet"
	}
	ap, err := netip.ParsePrefix(r.GetAddr())
	if err != nil || ap.Bits() != net.Bits() || !net.Contains(ap.Addr()) {
		return fmt.Sprintf("addr %q is not an address of %s in CIDR form with its /%d", r.GetAddr(), net, net.Bits())
	}
	if prev, ok := l.owners[req.GetNetworkId()][req.GetOwner()]; ok {
		if prev != r.GetAddr() {
			return fmt.Sprintf("addr %s, but the owner holds %s", r.GetAddr(), prev)
		}
		return ""
	}
	if other, ok := l.addrs[ap.Addr()]; ok {
		return fmt.Sprintf("addr %s is held by %s", ap.Addr(), other)
	}
	nodes := l.slices[req.GetNetworkId()]
	if req.GetNodeId() == "" {
		for node, s := range nodes {
			if s.Contains(ap.Addr()) {
				return fmt.Sprintf("virtual IP %s is in node %s's slice %s", ap.Addr(), node, s)
			}
		}
		if ap.Addr() == net.Addr() {
			return fmt.Sprintf("virtual IP %s is the network's own address", ap.Addr())
		}
	} else {
		s, err := netip.ParsePrefix(r.GetNodeSubnet())
		if err != nil || s.Masked() != s || s.Bits() != l.nodeBits[req.GetNetworkId()] || !net.Contains(s.Addr()) {
			return fmt.Sprintf("node_subnet %q is not a /%d slice of %s", r.GetNodeSubnet(), l.nodeBits[req.GetNetworkId()], net)
		}
		if have, ok := nodes[req.GetNodeId()]; ok && have != s {
			return fmt.Sprintf("node_subnet %s, but the node holds %s", s, have)
		}
		for node, other := range nodes {
			if node != req.GetNodeId() && other == s {
				return fmt.Sprintf("node_subnet %s is node %s's", s, node)
			}
		}
		gw := s.Addr().Next()
		if r.GetGateway() != gw.String() {
			return fmt.Sprintf("gateway %q, want the slice's first address %s", r.GetGateway(), gw)
		}
		last := lastAddr(s)
		if !s.Contains(ap.Addr()) || ap.Addr() == s.Addr() || ap.Addr() == gw || ap.Addr() == last {
			return fmt.Sprintf("addr %s is not a task address of slice %s (not its network, gateway or broadcast address)", ap.Addr(), s)
		}
		nodes[req.GetNodeId()] = s
	}
	l.owners[req.GetNetworkId()][req.GetOwner()] = r.GetAddr()
	l.addrs[ap.Addr()] = req.GetNetworkId() + "/" + req.GetOwner()
	return ""
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= (1 << (32 - p.Bits())) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// release sends a release and forgets what it names.
func (l *ledger) release(t *testing.T, in ipam.IPAM, req *ipamv1.ReleaseRequest) {
	t.Helper()
	req.RestoreId = l.restoreID
	if _, err := in.Release(t.Context(), req); err != nil {
		t.Fatalf("Release = %v, want nil", err)
	}
	drop := func(network, owner string) {
		if a, ok := l.owners[network][owner]; ok {
			delete(l.addrs, netip.MustParsePrefix(a).Addr())
			delete(l.owners[network], owner)
		}
	}
	for _, a := range req.GetAddresses() {
		drop(a.GetNetworkId(), a.GetOwner())
	}
	for _, ns := range req.GetNodeSubnets() {
		s, ok := l.slices[ns.GetNetworkId()][ns.GetNodeId()]
		if !ok {
			continue
		}
		for owner, a := range l.owners[ns.GetNetworkId()] {
			if s.Contains(netip.MustParsePrefix(a).Addr()) {
				drop(ns.GetNetworkId(), owner)
			}
		}
		delete(l.slices[ns.GetNetworkId()], ns.GetNodeId())
	}
	for _, id := range req.GetNetworks() {
		for owner := range l.owners[id] {
			drop(id, owner)
		}
		delete(l.nets, id)
		delete(l.nodeBits, id)
		delete(l.slices, id)
		delete(l.owners, id)
	}
}
