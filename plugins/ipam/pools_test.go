package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/ipam"
	"github.com/shoalhq/shoal/sdk/ipam/ipamtest"
	ipamv1 "github.com/shoalhq/shoal/sdk/proto/shoal/ipam/v1"
)

func TestConformance(t *testing.T) {
	ipamtest.Run(t, func() ipam.IPAM { return New() })
}

func TestConfigureRefusesBadValues(t *testing.T) {
	for _, c := range []struct {
		config, field string
	}{
		{`default_pool = "10.0.0.0"`, "config.default_pool"},
		{`default_pool = "10.0.0.1/16"`, "config.default_pool"},
		{`default_prefix_len = 8`, "config.default_prefix_len"},
		{`node_prefix_len = 31`, "config.node_prefix_len"},
		{"default_prefix_len = 24\nnode_prefix_len = 24", "config.node_prefix_len"},
	} {
		err := New().Configure(t.Context(), []byte(c.config))
		var fe sdk.FieldErrors
		if !errors.As(err, &fe) || len(fe) != 1 || fe[0].Field != c.field {
			t.Errorf("Configure(%q) = %v, want one error naming %s", c.config, err, c.field)
		}
	}
	if err := New().Configure(t.Context(), []byte("default_pool = \"10.100.0.0/14\"\ndefault_prefix_len = 20\nnode_prefix_len = 26\n")); err != nil {
		t.Errorf("Configure(valid) = %v", err)
	}
}

func allocate(t *testing.T, p *Pools, req *ipamv1.AllocateRequest) *ipamv1.AllocateResponse {
	t.Helper()
	req.RestoreId = 1
	resp, err := p.Allocate(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestDefaultPoolAndRoundRobin(t *testing.T) {
	p := New()
	if err := p.Configure(t.Context(), []byte("default_pool = \"10.100.0.0/15\"\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Restore(t.Context(), &ipamv1.RestoreRequest{RestoreId: 1}); err != nil {
		t.Fatal(err)
	}
	resp := allocate(t, p, &ipamv1.AllocateRequest{Subnets: []*ipamv1.SubnetRequest{{NetworkId: "a"}, {NetworkId: "b"}, {NetworkId: "c"}}})
	got := []string{resp.Subnets[0].GetSubnet(), resp.Subnets[1].GetSubnet(), resp.Subnets[2].GetError()}
	if got[0] != "10.100.0.0/16" || got[1] != "10.101.0.0/16" || !strings.Contains(got[2], "no free /16") {
		t.Errorf("three networks from a /15 pool of /16s = %q, want the two /16s and an exhaustion error", got)
	}
	// An address released is the last one given again.
	first := allocate(t, p, &ipamv1.AllocateRequest{Addresses: []*ipamv1.AddressRequest{{NetworkId: "a", Owner: "t1", NodeId: "n"}}}).Addresses[0]
	if first.GetAddr() != "10.100.1.2/16" || first.GetGateway() != "10.100.1.1" || first.GetNodeSubnet() != "10.100.1.0/24" {
		t.Errorf("first task address = %v, want 10.100.1.2/16 in 10.100.1.0/24 behind 10.100.1.1", first)
	}
	if _, err := p.Release(t.Context(), &ipamv1.ReleaseRequest{RestoreId: 1, Addresses: []*ipamv1.AddressRelease{{NetworkId: "a", Owner: "t1"}}}); err != nil {
		t.Fatal(err)
	}
	next := allocate(t, p, &ipamv1.AllocateRequest{Addresses: []*ipamv1.AddressRequest{{NetworkId: "a", Owner: "t2", NodeId: "n"}}}).Addresses[0]
	if next.GetAddr() != "10.100.1.3/16" {
		t.Errorf("address after releasing 10.100.1.2 = %s, want 10.100.1.3 (round-robin)", next.GetAddr())
	}
}
