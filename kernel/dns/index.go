package dns

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/netfiles"
)

// EndpointMode is how a service's name resolves.
type EndpointMode string

// The endpoint modes, as in swarm mode.
const (
	// ModeVIP: the service's name gives its virtual IP on the network. It
	// is the default (the empty mode).
	ModeVIP EndpointMode = "vip"
	// ModeDNSRR: the service's name gives the addresses of its backends,
	// in random order.
	ModeDNSRR EndpointMode = "dnsrr"
)

// Service is a service on one network, as the index answers for it.
type Service struct {
	NetworkID string
	Name      string
	// Mode is ModeVIP when empty.
	Mode EndpointMode
	// VIP is the service's virtual IP on the network (mode vip). Without
	// one (not allocated, or not known yet) the name gives the backends,
	// as with ModeDNSRR.
	VIP netip.Addr
	// Aliases are other names of the service on this network
	// (`--network name=app,alias=db`); they answer as the name does.
	Aliases []string
}

// Task is a task's endpoint on one network.
type Task struct {
	NetworkID string
	TaskID    string
	// Name is the task's name without its ID: "web.1" for a replicated
	// service's slot 1, "web.NODEID" for a global service's task. The task
	// answers to Name and to Name + "." + TaskID.
	Name string
	// ServiceName is the service whose backend the task is.
	ServiceName string
	Addr        netip.Addr
	// Aliases are the task's network aliases; an alias gives the
	// addresses of the backends carrying it.
	Aliases []string
	// Backend is true while the task runs and is healthy (or has no health
	// check): only backends are in the answers for the service's name
	// (dnsrr or without a VIP), tasks.SERVICE and aliases. The task's own
	// names answer while it is in the index, backend or not.
	Backend bool
}

// Bounds on what the index takes, so that any answer of one name stays
// within what TCP carries (64 KiB: about 4,000 A records).
const (
	maxNameLen = 253 // a DNS name in presentation form, without the final dot
	maxAliases = 64
)

// Index is what a node's DNS server answers from: per network, its
// services, their tasks and the tasks' names. Its methods are safe for
// concurrent use; an update costs a few map operations and is seen by the
// next query.
type Index struct {
	mu   sync.RWMutex
	nets map[string]*network
	// clients maps a task address to the (network, task) endpoints that
	// have it, for finding a querying task's networks.
	clients map[netip.Addr]map[endpointKey]struct{}
	// taskNets maps a task ID to the networks it has an endpoint on.
	taskNets map[string]map[string]struct{}
}

type endpointKey struct{ network, task string }

// network is one network's names. Every name is lower case.
type network struct {
	services map[string]*Service
	// svcAliases maps a service alias to the service's name.
	svcAliases map[string]string
	tasks      map[string]*Task
	// backends, taskAliases and taskNames map a name to the tasks that
	// answer to it, by task ID: a service's backends, tasks carrying an
	// alias, tasks with a name (two tasks may share "web.1" while one
	// replaces the other).
	backends    map[string]map[string]*Task
	taskAliases map[string]map[string]*Task
	taskNames   map[string]map[string]*Task
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{
		nets:     map[string]*network{},
		clients:  map[netip.Addr]map[endpointKey]struct{}{},
		taskNets: map[string]map[string]struct{}{},
	}
}

// SetService adds s, or replaces the service of that name on that network.
// Invalid input is an error of kind sdk.ErrInvalidArgument naming the
// fields; nothing changes then.
func (ix *Index) SetService(s Service) error {
	var fe sdk.FieldErrors
	checkID(&fe, "network_id", s.NetworkID)
	s.Name = checkName(&fe, "name", s.Name)
	switch s.Mode {
	case "":
		s.Mode = ModeVIP
	case ModeVIP, ModeDNSRR:
	default:
		fe.Add("mode", "must be %q or %q, got %q", ModeVIP, ModeDNSRR, s.Mode)
	}
	if s.VIP.IsValid() {
		s.VIP = s.VIP.Unmap()
	}
	s.Aliases = checkAliases(&fe, s.Aliases)
	if err := fe.Err(); err != nil {
		return fmt.Errorf("set service %q: %w", s.Name, err)
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	n := ix.network(s.NetworkID)
	if old := n.services[s.Name]; old != nil {
		n.removeServiceAliases(old)
	}
	n.services[s.Name] = &s
	for _, a := range s.Aliases {
		n.svcAliases[a] = s.Name
	}
	return nil
}

// RemoveService removes the service; its tasks stay until removed.
func (ix *Index) RemoveService(networkID, name string) {
	name = lower(name)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	n := ix.nets[networkID]
	if n == nil {
		return
	}
	if old := n.services[name]; old != nil {
		n.removeServiceAliases(old)
		delete(n.services, name)
	}
	ix.dropIfEmpty(networkID, n)
}

// SetTask adds t, or replaces the task's endpoint on that network (its
// health, its address). Invalid input is an error of kind
// sdk.ErrInvalidArgument naming the fields; nothing changes then.
func (ix *Index) SetTask(t Task) error {
	var fe sdk.FieldErrors
	checkID(&fe, "network_id", t.NetworkID)
	checkID(&fe, "task_id", t.TaskID)
	t.Name = checkName(&fe, "name", t.Name)
	if t.Name != "" && len(t.Name)+1+len(t.TaskID) > maxNameLen {
		fe.Add("name", "with the task ID must be at most %d characters", maxNameLen)
	}
	t.ServiceName = checkName(&fe, "service_name", t.ServiceName)
	if !t.Addr.IsValid() {
		fe.Add("addr", "is required")
	}
	t.Addr = t.Addr.Unmap()
	t.Aliases = checkAliases(&fe, t.Aliases)
	if err := fe.Err(); err != nil {
		return fmt.Errorf("set task %s: %w", t.TaskID, err)
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	n := ix.network(t.NetworkID)
	if old := n.tasks[t.TaskID]; old != nil {
		ix.unlinkTask(n, old)
	}
	ix.linkTask(n, &t)
	return nil
}

// RemoveTask removes the task's endpoint on the network.
func (ix *Index) RemoveTask(networkID, taskID string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	n := ix.nets[networkID]
	if n == nil {
		return
	}
	if old := n.tasks[taskID]; old != nil {
		ix.unlinkTask(n, old)
	}
	ix.dropIfEmpty(networkID, n)
}

// Networks returns the IDs of the networks of the task(s) with address
// client: the networks whose names it may resolve.
func (ix *Index) Networks(client netip.Addr) []string {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var ids []string
	ix.clientNetworks(client.Unmap(), func(id string, _ *network) bool {
		ids = append(ids, id)
		return true
	})
	return ids
}

// lookupResult is what the index knows of a name for a client.
type lookupResult int

const (
	unknown   lookupResult = iota // not a name of any network: forward it
	elsewhere                     // a name on networks the client is not on
	found                         // a name on the client's networks
)

// lookup resolves name (lower case, no final dot) for client, appending
// its addresses to addrs. A name found with no address (a service without
// backends) is found all the same.
func (ix *Index) lookup(client netip.Addr, name string, addrs []netip.Addr) ([]netip.Addr, lookupResult) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	nets := 0
	ix.clientNetworks(client, func(_ string, n *network) bool {
		var ok bool
		if addrs, ok = n.resolve(name, addrs); ok {
			nets++
		}
		return true
	})
	switch nets {
	case 0:
	case 1:
		return addrs, found
	default:
		return dedup(addrs), found
	}
	for _, n := range ix.nets {
		if _, ok := n.resolve(name, nil); ok {
			return addrs, elsewhere
		}
	}
	return addrs, unknown
}

// clientNetworks calls f for each network of the tasks with address client,
// once each, until f returns false.
func (ix *Index) clientNetworks(client netip.Addr, f func(id string, n *network) bool) {
	eps := ix.clients[client]
	if len(eps) == 1 {
		// The common case, without allocating: one task with this address.
		for ep := range eps {
			for id := range ix.taskNets[ep.task] {
				if !f(id, ix.nets[id]) {
					return
				}
			}
		}
		return
	}
	seen := map[string]bool{}
	for ep := range eps {
		for id := range ix.taskNets[ep.task] {
			if seen[id] {
				continue
			}
			seen[id] = true
			if !f(id, ix.nets[id]) {
				return
			}
		}
	}
}

// resolve appends the addresses of name on n to addrs; ok tells whether n
// has the name at all.
func (n *network) resolve(name string, addrs []netip.Addr) (_ []netip.Addr, ok bool) {
	if svc, found := strings.CutPrefix(name, "tasks."); found {
		if _, ok := n.services[svc]; ok || n.backends[svc] != nil {
			return appendAddrs(addrs, n.backends[svc]), true
		}
	}
	svc, ok := name, false
	if _, ok = n.services[name]; !ok {
		svc, ok = n.svcAliases[name]
	}
	if !ok && n.backends[name] != nil {
		// Backends known before their service (from gossip, say).
		svc, ok = name, true
	}
	if ok {
		if s := n.services[svc]; s != nil && s.Mode == ModeVIP && s.VIP.IsValid() {
			return append(addrs, s.VIP), true
		}
		return appendAddrs(addrs, n.backends[svc]), true
	}
	if ts := n.taskAliases[name]; ts != nil {
		return appendAddrs(addrs, ts), true
	}
	if ts := n.taskNames[name]; ts != nil {
		for _, t := range ts {
			addrs = append(addrs, t.Addr)
		}
		return addrs, true
	}
	return addrs, false
}

// appendAddrs appends the addresses of the backends among ts.
func appendAddrs(addrs []netip.Addr, ts map[string]*Task) []netip.Addr {
	for _, t := range ts {
		if t.Backend {
			addrs = append(addrs, t.Addr)
		}
	}
	return addrs
}

func dedup(addrs []netip.Addr) []netip.Addr {
	if len(addrs) < 2 {
		return addrs
	}
	seen := make(map[netip.Addr]struct{}, len(addrs))
	out := addrs[:0]
	for _, a := range addrs {
		if _, ok := seen[a]; !ok {
			seen[a] = struct{}{}
			out = append(out, a)
		}
	}
	return out
}

func (ix *Index) network(id string) *network {
	n := ix.nets[id]
	if n == nil {
		n = &network{
			services:    map[string]*Service{},
			svcAliases:  map[string]string{},
			tasks:       map[string]*Task{},
			backends:    map[string]map[string]*Task{},
			taskAliases: map[string]map[string]*Task{},
			taskNames:   map[string]map[string]*Task{},
		}
		ix.nets[id] = n
	}
	return n
}

func (ix *Index) dropIfEmpty(id string, n *network) {
	if len(n.services) == 0 && len(n.tasks) == 0 {
		delete(ix.nets, id)
	}
}

func (n *network) removeServiceAliases(s *Service) {
	for _, a := range s.Aliases {
		if n.svcAliases[a] == s.Name {
			delete(n.svcAliases, a)
		}
	}
}

func (ix *Index) linkTask(n *network, t *Task) {
	n.tasks[t.TaskID] = t
	addTo(n.backends, t.ServiceName, t)
	for _, a := range t.Aliases {
		addTo(n.taskAliases, a, t)
	}
	addTo(n.taskNames, t.Name, t)
	addTo(n.taskNames, t.Name+"."+lower(t.TaskID), t)

	key := endpointKey{t.NetworkID, t.TaskID}
	if ix.clients[t.Addr] == nil {
		ix.clients[t.Addr] = map[endpointKey]struct{}{}
	}
	ix.clients[t.Addr][key] = struct{}{}
	if ix.taskNets[t.TaskID] == nil {
		ix.taskNets[t.TaskID] = map[string]struct{}{}
	}
	ix.taskNets[t.TaskID][t.NetworkID] = struct{}{}
}

func (ix *Index) unlinkTask(n *network, t *Task) {
	delete(n.tasks, t.TaskID)
	removeFrom(n.backends, t.ServiceName, t.TaskID)
	for _, a := range t.Aliases {
		removeFrom(n.taskAliases, a, t.TaskID)
	}
	removeFrom(n.taskNames, t.Name, t.TaskID)
	removeFrom(n.taskNames, t.Name+"."+lower(t.TaskID), t.TaskID)

	key := endpointKey{t.NetworkID, t.TaskID}
	delete(ix.clients[t.Addr], key)
	if len(ix.clients[t.Addr]) == 0 {
		delete(ix.clients, t.Addr)
	}
	delete(ix.taskNets[t.TaskID], t.NetworkID)
	if len(ix.taskNets[t.TaskID]) == 0 {
		delete(ix.taskNets, t.TaskID)
	}
}

func addTo(m map[string]map[string]*Task, name string, t *Task) {
	if m[name] == nil {
		m[name] = map[string]*Task{}
	}
	m[name][t.TaskID] = t
}

func removeFrom(m map[string]map[string]*Task, name, taskID string) {
	delete(m[name], taskID)
	if len(m[name]) == 0 {
		delete(m, name)
	}
}

// checkID checks an ID: required, and short.
func checkID(fe *sdk.FieldErrors, field, id string) {
	switch {
	case id == "":
		fe.Add(field, "is required")
	case len(id) > 128:
		fe.Add(field, "must be at most 128 characters, got %d", len(id))
	}
}

// checkName checks a name the index answers to and returns it in the form
// it is kept: lower case, without a final dot.
func checkName(fe *sdk.FieldErrors, field, name string) string {
	name = lower(name)
	if name == "" {
		fe.Add(field, "is required")
		return name
	}
	if len(name) > maxNameLen {
		fe.Add(field, "must be at most %d characters, got %d", maxNameLen, len(name))
		return name
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			fe.Add(field, "%q is not a DNS name: labels must be 1 to 63 characters", name)
			return name
		}
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			fe.Add(field, "%q is not a DNS name: only letters, digits, '-', '_' and '.' are allowed", name)
			return name
		}
	}
	return name
}

func checkAliases(fe *sdk.FieldErrors, aliases []string) []string {
	if len(aliases) > maxAliases {
		fe.Add("aliases", "must be at most %d, got %d", maxAliases, len(aliases))
		return nil
	}
	out := make([]string, len(aliases))
	for i, a := range aliases {
		out[i] = checkName(fe, fmt.Sprintf("aliases[%d]", i), a)
	}
	return out
}

// lower is how the index keys names: sdk/netfiles.CanonicalName, the form
// the task's own /etc/hosts uses too.
var lower = netfiles.CanonicalName
