package main

import (
	"fmt"
	"testing"

	ipamv1 "github.com/shoalhq/shoal/sdk/proto/shoal/ipam/v1"
)

// BenchmarkAllocate10000 allocates 10,000 task addresses on 100 nodes, in
// the kernel's batches of 1,000, into a restored plugin.
func BenchmarkAllocate10000(b *testing.B) {
	var batches [][]*ipamv1.AddressRequest
	for i := range 10 {
		var batch []*ipamv1.AddressRequest
		for j := range 1000 {
			n := i*1000 + j
			batch = append(batch, &ipamv1.AddressRequest{NetworkId: "net", Owner: fmt.Sprintf("task-%d", n), NodeId: fmt.Sprintf("node-%d", n%100)})
		}
		batches = append(batches, batch)
	}
	for b.Loop() {
		p := New()
		if _, err := p.Restore(b.Context(), &ipamv1.RestoreRequest{RestoreId: 1, Networks: []*ipamv1.NetworkState{{NetworkId: "net", Subnet: "10.200.0.0/16", NodePrefixLen: 24}}}); err != nil {
			b.Fatal(err)
		}
		for _, batch := range batches {
			resp, err := p.Allocate(b.Context(), &ipamv1.AllocateRequest{RestoreId: 1, Addresses: batch})
			if err != nil || resp.GetAddresses()[0].GetError() != "" {
				b.Fatal(err, resp.GetAddresses()[0].GetError())
			}
		}
	}
}
