package node

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/shoalhq/shoal/kernel/dns"
	"github.com/shoalhq/shoal/kernel/gossip"
	"github.com/shoalhq/shoal/kernel/lb"
)

type fakeBalancer struct{ syncs [][]lb.Service }

func (f *fakeBalancer) Sync(_ context.Context, s []lb.Service) error {
	f.syncs = append(f.syncs, s)
	return nil
}

type fakeDNS struct{ addrs [][]string }

func (f *fakeDNS) SetAddrs(a []string) error {
	f.addrs = append(f.addrs, slices.Clone(a))
	return nil
}

func ep(task, svc, net, addr string, backend bool) gossip.Endpoint {
	return gossip.Endpoint{TaskID: task, ServiceID: "id-" + svc, ServiceName: svc, NetworkID: net, Addr: addr,
		TaskName: svc + "." + strings.TrimPrefix(task, "t"), Backend: backend}
}

func TestServiceViewDNS(t *testing.T) {
	ix := dns.NewIndex()
	d, b := &fakeDNS{}, &fakeBalancer{}
	v := newServiceView(ix, d, b, slog.New(slog.DiscardHandler))
	redis1 := ep("t1", "redis", "net1", "10.200.1.2", true)
	redis1.VIP = "10.200.0.2"
	redis1.Aliases = []string{"db"}
	redis2 := ep("t2", "redis", "net1", "10.200.2.2", false) // starting: not a backend
	redis2.VIP = "10.200.0.2"
	client := ep("t3", "client", "net1", "10.200.1.3", true)
	other := ep("t4", "hidden", "net2", "10.201.1.2", true)
	if err := v.apply(context.Background(), []gossip.Endpoint{redis1, redis2, client, other}, []string{"10.200.1.1"}, false); err != nil {
		t.Fatal(err)
	}
	if got := d.addrs; len(got) != 1 || !slices.Equal(got[0], []string{"10.200.1.1:53"}) {
		t.Errorf("DNS addresses %v, want [10.200.1.1:53]", got)
	}
	if got := ix.Networks(netip.MustParseAddr("10.200.1.3")); !slices.Equal(got, []string{"net1"}) {
		t.Errorf("the client's networks: %v, want [net1]", got)
	}

	// Same input: nothing set again, no new Sync, no new listen call.
	if err := v.apply(context.Background(), []gossip.Endpoint{redis1, redis2, client, other}, []string{"10.200.1.1"}, false); err != nil {
		t.Fatal(err)
	}
	if len(b.syncs) != 1 || len(d.addrs) != 1 {
		t.Errorf("an unchanged view synced the balancer %d times and the DNS addresses %d times, want once each", len(b.syncs), len(d.addrs))
	}
	// At the periodic resync (force), the same view is written again (a
	// flushed ruleset is repaired).
	if err := v.apply(context.Background(), []gossip.Endpoint{redis1, redis2, client, other}, []string{"10.200.1.1"}, true); err != nil {
		t.Fatal(err)
	}
	if len(b.syncs) != 2 {
		t.Errorf("after a forced apply the balancer was synced %d times in all, want 2", len(b.syncs))
	}

	// The VIP balances over the backends only; the client has no VIP.
	want := []lb.Service{{Name: lbName("id-redis", "net1"), VIP: netip.MustParseAddr("10.200.0.2"), Backends: []netip.Addr{netip.MustParseAddr("10.200.1.2")}}}
	if got := b.syncs[0]; !slices.EqualFunc(got, want, equalLBService) {
		t.Errorf("balancer = %+v, want %+v", got, want)
	}

	// redis.2 turns healthy, redis.1 dies: the backends follow.
	redis2.Backend = true
	if err := v.apply(context.Background(), []gossip.Endpoint{redis2, client, other}, []string{"10.200.1.1"}, false); err != nil {
		t.Fatal(err)
	}
	if got := b.syncs[len(b.syncs)-1][0].Backends; !slices.Equal(got, []netip.Addr{netip.MustParseAddr("10.200.2.2")}) {
		t.Errorf("after redis.1 died: backends %v, want [10.200.2.2]", got)
	}
	if _, ok := v.tasks[taskKey{"net1", "t1"}]; ok {
		t.Error("the dead task is still in the index")
	}

	// Everything gone: the index is empty, the balancer holds nothing.
	if err := v.apply(context.Background(), nil, nil, false); err != nil {
		t.Fatal(err)
	}
	if len(v.tasks) != 0 || len(v.services) != 0 || len(b.syncs[len(b.syncs)-1]) != 0 {
		t.Errorf("after every endpoint left: %d tasks, %d services, balancer %v", len(v.tasks), len(v.services), b.syncs[len(b.syncs)-1])
	}
	if got := ix.Networks(netip.MustParseAddr("10.200.1.3")); len(got) != 0 {
		t.Errorf("the index still knows the client on %v", got)
	}
}

func TestBalancedMesh(t *testing.T) {
	web1 := ep("t1", "web", "net1", "10.200.1.2", true)
	web1.VIP = "10.200.0.2"
	web1.Ingress = []string{"8080:80/tcp"}
	web2 := ep("t2", "web", "net1", "10.200.2.2", true)
	web2.VIP = "10.200.0.2"
	web2.Ingress = []string{"8080:80/tcp"}
	// The same task on a second network: one VIP per network, the mesh
	// ports once.
	web1b := web1
	web1b.NetworkID, web1b.Addr, web1b.VIP = "net2", "10.201.1.2", "10.201.0.2"
	// A dnsrr service with a mesh port: no VIP, the port still balanced.
	rr := ep("t3", "rr", "net1", "10.200.1.3", true)
	rr.DNSRR = true
	rr.Ingress = []string{"53:53/udp"}
	// A stale claim of web's port by another service.
	stale := ep("t4", "zzz", "net1", "10.200.1.4", true)
	stale.Ingress = []string{"8080:8080/tcp"}

	got, errs := balanced([]gossip.Endpoint{web1, web2, web1b, rr, stale})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "8080/tcp") {
		t.Errorf("errors %v, want one naming the port claimed twice", errs)
	}
	byName := map[string]lb.Service{}
	for _, s := range got {
		byName[s.Name] = s
	}
	w := byName[lbName("id-web", "net1")]
	if len(w.Ports) != 1 || w.Ports[0].Published != 8080 || w.Ports[0].Port != 80 || len(w.Ports[0].Backends) != 2 || len(w.Backends) != 2 {
		t.Errorf("web on net1 = %+v, want its VIP over 2 backends and 8080->80 over both", w)
	}
	if w2 := byName[lbName("id-web", "net2")]; w2.VIP != netip.MustParseAddr("10.201.0.2") || len(w2.Ports) != 0 {
		t.Errorf("web on net2 = %+v, want its own VIP and no mesh port", w2)
	}
	if r := byName[lbName("id-rr", "net1")]; r.VIP.IsValid() || len(r.Ports) != 1 || r.Ports[0].Protocol != lb.UDP {
		t.Errorf("rr = %+v, want no VIP and 53/udp", r)
	}
	if _, ok := byName[lbName("id-zzz", "net1")]; ok {
		t.Error("the service with the stale claim got the port")
	}
}
