package gossip

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func ep(task, svc, addr string) Endpoint {
	return Endpoint{TaskID: task, ServiceName: svc, NetworkID: "net1", Addr: addr}
}

func addrs(eps []Endpoint) []string {
	var out []string
	for _, e := range eps {
		out = append(out, e.NodeID+":"+e.TaskID+"="+e.Addr)
	}
	return out
}

// publisher makes the entries node publishes, through a store of its own.
func publisher(node string, epoch int64) func(eps ...Endpoint) []entry {
	s := newStore(node)
	s.local(epoch, []Slice{}, nil, false, time.Now())
	first := true
	return func(eps ...Endpoint) []entry {
		es := s.local(epoch, nil, eps, true, time.Now())
		if first {
			first = false
			return s.state(time.Now(), time.Hour)
		}
		return es
	}
}

func TestStoreRecords(t *testing.T) {
	now := time.Now()
	s := newStore("self")
	s.setAlive("self", "127.0.0.1", now)
	apply := func(es []entry) {
		for _, e := range es {
			s.apply(e, now)
		}
	}
	check := func(step string, want ...string) {
		t.Helper()
		if got := addrs(s.endpoints(nil)); !slices.Equal(got, want) {
			t.Errorf("%s: endpoints = %v, want %v", step, got, want)
		}
	}

	pubB := publisher("b", 100)
	first := pubB(ep("t1", "web", "10.0.0.1"), ep("t2", "web", "10.0.0.2"))
	apply(first)
	check("before b is alive")
	s.setAlive("b", "192.168.1.2", now)
	check("b alive", "b:t1=10.0.0.1", "b:t2=10.0.0.2")

	second := pubB(ep("t2", "web", "10.0.0.9"), ep("t3", "web", "10.0.0.3"))
	apply(second)
	check("newer record replaces", "b:t2=10.0.0.9", "b:t3=10.0.0.3")
	apply(first) // an old copy arriving late changes nothing
	check("older entries ignored", "b:t2=10.0.0.9", "b:t3=10.0.0.3")

	// b restarts: its new epoch replaces everything it had.
	pubB2 := publisher("b", 200)
	apply(pubB2(ep("t4", "api", "10.0.0.4")))
	check("new epoch", "b:t4=10.0.0.4")
	apply(second)
	check("old epoch ignored", "b:t4=10.0.0.4")

	if ps := s.peers(); len(ps) != 1 || ps[0].NodeID != "b" || ps[0].Addr != "192.168.1.2" {
		t.Errorf("peers = %+v, want b at 192.168.1.2", ps)
	}
	s.setGone("b", now)
	check("b gone")
	if ps := s.peers(); len(ps) != 0 {
		t.Errorf("peers after b left = %+v", ps)
	}
	for _, e := range s.state(now, time.Hour) {
		if e.Node == "b" {
			t.Errorf("state passes on an entry of b, which is gone: %+v", e)
		}
	}
	// b was only thought dead: it comes back with its record, and a late
	// copy of an older entry does not override it.
	apply(second)
	s.setAlive("b", "192.168.1.2", now)
	check("b back", "b:t4=10.0.0.4")
	s.setGone("b", now)
	s.state(now.Add(goneRetention+time.Second), time.Hour)
	s.setAlive("b", "192.168.1.2", now)
	check("b back after its record expired")
}

func TestStoreOwnEntries(t *testing.T) {
	now := time.Now()
	s := newStore("self")
	s.local(1, []Slice{}, nil, false, now)
	es := s.local(1, nil, []Endpoint{ep("t1", "web", "10.0.0.1")}, true, now)
	if len(es) != 1 || es[0].Key != endpointKey(ep("t1", "web", "10.0.0.1")) || es[0].Deleted {
		t.Fatalf("publish t1 = %+v", es)
	}
	if again := s.local(1, nil, []Endpoint{ep("t1", "web", "10.0.0.1")}, true, now); len(again) != 0 {
		t.Errorf("publishing the same set again = %+v, want no change", again)
	}
	live := es[0]
	del := s.local(1, nil, nil, true, now)
	if len(del) != 1 || !del[0].Deleted || del[0].Seq <= live.Seq {
		t.Fatalf("removing t1 = %+v, want a newer tombstone", del)
	}
	if r := s.apply(live, now); r != ignored {
		t.Errorf("old live copy of own entry while the tombstone is held: %v, want ignored", r)
	}
	// The tombstone expires; someone passes the old entry back: the node
	// must delete it again, with a newer sequence number.
	s.state(now.Add(2*tombstoneTTL), tombstoneTTL)
	if r := s.apply(live, now); r != contradicts {
		t.Fatalf("old live copy after expiry: %v, want contradicts", r)
	}
	ts := s.tombstone(live.Key, live.Seq, now)
	if !ts.Deleted || ts.Seq <= del[0].Seq {
		t.Errorf("tombstone = %+v, want seq above %d", ts, del[0].Seq)
	}
}

func TestValidateEntry(t *testing.T) {
	good := ep("t1", "web", "10.0.0.1")
	for _, c := range []struct {
		name string
		e    entry
		ok   bool
	}{
		{"endpoint", entry{Node: "a", Key: endpointKey(good), Endpoint: &good}, true},
		{"head", entry{Node: "a", Slices: []Slice{{NetworkID: "n", NodeSubnet: "10.0.0.0/24"}}}, true},
		{"tombstone", entry{Node: "a", Key: "x", Deleted: true}, true},
		{"no node", entry{Key: endpointKey(good), Endpoint: &good}, false},
		{"key mismatch", entry{Node: "a", Key: "other", Endpoint: &good}, false},
		{"no endpoint", entry{Node: "a", Key: "x"}, false},
		{"bad addr", entry{Node: "a", Key: endpointKey(good), Endpoint: &Endpoint{TaskID: "t1", ServiceName: "web", NetworkID: "net1", Addr: "nope"}}, false},
		{"full endpoint", entry{Node: "a", Key: endpointKey(good), Endpoint: &Endpoint{TaskID: "t1", ServiceName: "web", NetworkID: "net1", Addr: "10.0.0.1",
			TaskName: "web.1", VIP: "10.0.0.2", Backend: true, Ingress: []string{"8080:80/tcp", "53:53/udp"}}}, true},
		{"bad vip", entry{Node: "a", Key: endpointKey(good), Endpoint: &Endpoint{TaskID: "t1", ServiceName: "web", NetworkID: "net1", Addr: "10.0.0.1", VIP: "10.0.0.2/16"}}, false},
		{"bad ingress", entry{Node: "a", Key: endpointKey(good), Endpoint: &Endpoint{TaskID: "t1", ServiceName: "web", NetworkID: "net1", Addr: "10.0.0.1", Ingress: []string{"8080:0/tcp"}}}, false},
		{"ingress protocol", entry{Node: "a", Key: endpointKey(good), Endpoint: &Endpoint{TaskID: "t1", ServiceName: "web", NetworkID: "net1", Addr: "10.0.0.1", Ingress: []string{"8080:80/sctp"}}}, false},
		{"too many ingress", entry{Node: "a", Key: endpointKey(good), Endpoint: &Endpoint{TaskID: "t1", ServiceName: "web", NetworkID: "net1", Addr: "10.0.0.1", Ingress: make([]string, MaxIngressPorts+1)}}, false},
		{"head with a MAC", entry{Node: "a", MAC: "0a:1b:2c:3d:4e:5f"}, true},
		{"head with an upper-case MAC", entry{Node: "a", MAC: "0A:1B:2C:3D:4E:5F"}, true},
		{"head with a multicast MAC", entry{Node: "a", MAC: "01:00:5e:00:00:01"}, false},
		{"head with the broadcast MAC", entry{Node: "a", MAC: "ff:ff:ff:ff:ff:ff"}, false},
		{"head with the zero MAC", entry{Node: "a", MAC: "00:00:00:00:00:00"}, false},
		{"head with a malformed MAC", entry{Node: "a", MAC: "0a:1b:2c:3d:4e"}, false},
		{"head with an EUI-64", entry{Node: "a", MAC: "0a:1b:2c:3d:4e:5f:60:71"}, false},
		{"head with a long MAC", entry{Node: "a", MAC: strings.Repeat("0a:", 200) + "0a"}, false},
		{"endpoint with a MAC", entry{Node: "a", Key: endpointKey(good), Endpoint: &good, MAC: "0a:1b:2c:3d:4e:5f"}, false},
		{"tombstone with a MAC", entry{Node: "a", Key: "x", Deleted: true, MAC: "0a:1b:2c:3d:4e:5f"}, false},
	} {
		if err := validateEntry(c.e); (err == nil) != c.ok {
			t.Errorf("%s: validateEntry = %v, want ok %v", c.name, err, c.ok)
		}
	}
}

// An endpoint at the bounds people meet (IDs of 25 characters, names and
// aliases of 63, the DNS label limit, every alias and ingress port used)
// fits one gossip packet: memberlist's 1,400 bytes, less 29 of encryption
// (AES-GCM) and its compound framing.
func TestLargeEntryFitsAPacket(t *testing.T) {
	name := func(c byte) string { return strings.Repeat(string(c), 63) }
	id := func(c byte) string { return strings.Repeat(string(c), 25) }
	e := Endpoint{TaskID: id('t'), ServiceID: id('s'), ServiceName: name('n'), NetworkID: id('w'), Addr: "255.255.255.255",
		TaskName: name('x')[:60] + ".99", VIP: "255.255.255.255", Backend: true}
	for range maxAliases {
		e.Aliases = append(e.Aliases, name('a'))
	}
	for range MaxIngressPorts {
		e.Ingress = append(e.Ingress, "65535:65535/tcp")
	}
	b, err := encode(msgEntry, entry{Node: id('n'), Key: endpointKey(e), Seq: 1 << 62, Endpoint: &e})
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 1340 {
		t.Errorf("entry is %d bytes, more than a gossip packet carries", len(b))
	}
}

// TestStoreVTEPMAC: a node's VTEP MAC travels in its head entry, with its
// slices, and its peers expose it; a head without one (an older version)
// gives none.
func TestStoreVTEPMAC(t *testing.T) {
	now := time.Now()
	b := newStore("b")
	b.vtepMAC = "0a:1b:2c:3d:4e:5f"
	heads := b.local(1, []Slice{}, nil, false, now)
	if len(heads) != 1 || heads[0].Key != headKey || heads[0].MAC != b.vtepMAC {
		t.Fatalf("b's first head = %+v, want one with its MAC", heads)
	}
	if again := b.local(1, []Slice{}, nil, false, now); len(again) != 0 {
		t.Errorf("the same slices again = %+v, want no change", again)
	}
	sl := []Slice{{NetworkID: "net1", NodeSubnet: "10.200.5.0/24"}}
	heads = b.local(1, sl, nil, false, now)
	if len(heads) != 1 || heads[0].MAC != b.vtepMAC || !slices.Equal(heads[0].Slices, sl) {
		t.Fatalf("b's head after new slices = %+v, want the slices and the MAC", heads)
	}
	// Publishing endpoints leaves the head alone.
	if es := b.local(1, nil, []Endpoint{ep("t1", "web", "10.200.5.7")}, true, now); len(es) != 1 || es[0].Key == headKey {
		t.Errorf("publishing an endpoint = %+v, want only its entry", es)
	}

	s := newStore("self")
	s.setAlive("self", "127.0.0.1", now)
	s.setAlive("b", "192.168.1.2", now)
	s.setAlive("c", "192.168.1.3", now)
	for _, e := range b.state(now, time.Hour) {
		if err := validateEntry(e); err != nil {
			t.Fatalf("b's entry %+v: %v", e, err)
		}
		s.apply(e, now)
	}
	c := newStore("c") // an older version: no MAC
	c.local(7, []Slice{{NetworkID: "net1", NodeSubnet: "10.200.6.0/24"}}, nil, false, now)
	for _, e := range c.state(now, time.Hour) {
		s.apply(e, now)
	}
	ps := s.peers()
	if len(ps) != 2 || ps[0].NodeID != "b" || ps[0].VTEPMAC != "0a:1b:2c:3d:4e:5f" || len(ps[0].Slices) != 1 {
		t.Errorf("peers = %+v, want b with its slice and MAC first", ps)
	}
	if len(ps) == 2 && (ps[1].NodeID != "c" || ps[1].VTEPMAC != "" || len(ps[1].Slices) != 1) {
		t.Errorf("peers = %+v, want c with its slice and no MAC second", ps)
	}
}
