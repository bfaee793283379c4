package controlapi

import (
	"fmt"
	"strings"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// publishedKey is what a published port occupies: a protocol and a number.
type publishedKey struct {
	proto string
	port  uint32
}

// checkPortConflicts refuses a service spec that publishes a port another
// service publishes. The rule:
//
//   - A published port is its protocol and number: 8080/tcp and 8080/udp
//     are two ports, and a service may publish both.
//   - One service at most publishes a port, whatever the mode of each. A
//     port published in mode ingress is taken on every node (the routing
//     mesh answers on it everywhere), so it conflicts with the same port in
//     mode host, which binds it on whatever node a task lands on. Two
//     services in mode host would share the port only for as long as the
//     scheduler kept their tasks on different nodes, and it makes no such
//     promise: a task of the second would fail to bind it, or, with the
//     mesh, the port would be neither service's. Docker swarm refuses the
//     same ("port 8080 is already in use by service web").
//   - A port appears once in a spec (validateEndpoint refuses duplicates).
//   - Published port 0 ("any port", should the model ever allow it) takes
//     no particular number and conflicts with nothing.
//   - A service being updated (self, nil on create) is not a conflict with
//     itself. And a port it already publishes stays allowed even if another
//     service publishes it too: that can only be a conflict stored before
//     this rule existed, and refusing it would block every later update of
//     the service (a scale, an image) for a port it already has. Adding the
//     port, or getting it back (a rollback to a spec that had it), is
//     checked like any other.
//
// It runs inside the write's transaction, so it reads the state the write
// commits against: two concurrent creates with the same port cannot both
// pass. It returns nil or sdk.FieldErrors naming each conflicting
// spec.endpoint.ports[i].published_port, the port and the service that has
// it.
func checkPortConflicts(tx *state.ReadTx, spec *objectv1.ServiceSpec, self *objectv1.Service) error {
	want := make(map[publishedKey]int)
	for i, p := range spec.GetEndpoint().GetPorts() {
		k := keyOf(p)
		if k.port == 0 {
			continue
		}
		if _, dup := want[k]; !dup {
			want[k] = i
		}
	}
	if len(want) == 0 {
		return nil
	}
	if self != nil {
		for _, p := range self.GetSpec().GetEndpoint().GetPorts() {
			delete(want, keyOf(p))
		}
		if len(want) == 0 {
			return nil
		}
	}
	// The other service holding each wanted port, the first by name.
	type holder struct {
		svc  *objectv1.Service
		port *objectv1.PortConfig
	}
	held := make(map[publishedKey]holder)
	for _, svc := range tx.Services() {
		if self != nil && svc.GetId() == self.GetId() {
			continue
		}
		for _, p := range svc.GetSpec().GetEndpoint().GetPorts() {
			k := keyOf(p)
			if _, ok := want[k]; !ok {
				continue
			}
			if _, ok := held[k]; !ok {
				held[k] = holder{svc, p}
			}
		}
	}
	var fe sdk.FieldErrors
	for i, p := range spec.GetEndpoint().GetPorts() {
		k := keyOf(p)
		h, ok := held[k]
		if !ok || want[k] != i {
			continue
		}
		fe.Add(fmt.Sprintf("spec.endpoint.ports[%d].published_port", i),
			"port %d/%s is already in use by service %s (%s), published in mode %s",
			k.port, k.proto, quote(h.svc.GetSpec().GetAnnotations().GetName()), h.svc.GetId(), modeName(h.port.GetMode()))
	}
	return capped(fe).Err()
}

// keyOf is the port p occupies, with the server's default protocol when it
// is unset (as in a spec stored before defaults were applied).
func keyOf(p *objectv1.PortConfig) publishedKey {
	proto := p.GetProtocol()
	if proto == "" {
		proto = DefaultProtocol
	}
	return publishedKey{proto: proto, port: p.GetPublishedPort()}
}

// modeName is "host" for PUBLISH_MODE_HOST, "host" too when unset (the
// default), and the enum's name, lowercased and without its prefix, for any
// other.
func modeName(m objectv1.PublishMode) string {
	if m == objectv1.PublishMode_PUBLISH_MODE_UNSPECIFIED {
		m = objectv1.PublishMode_PUBLISH_MODE_HOST
	}
	return strings.ToLower(strings.TrimPrefix(m.String(), "PUBLISH_MODE_"))
}
