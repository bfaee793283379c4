package allocator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/ipam"
	ipamv1 "github.com/shoalhq/shoal/sdk/proto/shoal/ipam/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

const (
	// batchSize is the most addresses asked for in one plugin call, and so
	// the most tasks updated in one Raft entry: a 10,000-replica service is
	// ten calls, and an entry stays around a megabyte.
	batchSize = 1000
	// settle is how long work is gathered after the first change arrives,
	// so that a burst (a service scaled up) becomes full batches.
	settle = 20 * time.Millisecond
	// retryBlocked is how often work the plugin refused (a pool or slice
	// exhausted) is asked for again without a change that could free
	// addresses being seen.
	retryBlocked = 5 * time.Second
	// commitAttempts bounds the retries of a commit that lost a race with
	// another writer of the same objects (a version conflict): each
	// attempt re-reads them.
	commitAttempts = 3
	// minBackoff and maxBackoff pace retries while the plugin restarts.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Raft commits transactions; raftstore.Node implements it.
type Raft interface {
	Update(ctx context.Context, fn func(tx *state.Tx) error) error
}

// Plugin returns the IPAM plugin, waiting while its process (re)starts;
// pluginhost.Host implements it.
type Plugin interface {
	Get(ctx context.Context) (ipam.IPAM, error)
}

// Allocator is the allocation stage.
type Allocator struct {
	raft   Raft
	st     *state.Store
	plugin Plugin
	log    *slog.Logger

	// restoreID is the Restore the plugin holds; 0 when it must be
	// restored before the next request (Run's goroutine only).
	restoreID uint64
}

// New returns an allocation stage.
func New(r Raft, st *state.Store, p Plugin, logger *slog.Logger) *Allocator {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Allocator{raft: r, st: st, plugin: p, log: logger}
}

const deleteKind = raftv1.ActionKind_ACTION_KIND_DELETE

// needsAddress reports whether t is placed, wanted running and lacks an
// address on one of its networks.
func needsAddress(t *objectv1.Task) bool {
	return t.GetNodeId() != "" && t.GetDesiredState() == objectv1.TaskState_TASK_STATE_RUNNING &&
		t.GetStatus().GetState() >= objectv1.TaskState_TASK_STATE_ASSIGNED &&
		len(t.GetSpec().GetNetworks()) > 0 && !Allocated(t)
}

// work is what the store says may be missing, and what to release.
type work struct {
	nets  map[string]bool // networks that may lack a subnet
	svcs  map[string]bool // services that may lack a virtual IP, or hold one too many
	tasks map[string]bool // tasks that may lack an address
	gone  map[string]bool // removed nodes whose slices may be dropped
	// blocked are the services and tasks waiting for a network's subnet,
	// or refused by the plugin: asked again when a network gets its
	// subnet or releases happened, and every retryBlocked.
	blockedNets  map[string]bool
	blockedSvcs  map[string]bool
	blockedTasks map[string]bool
	rel          *ipamv1.ReleaseRequest
}

func newWork() *work {
	return &work{
		nets: map[string]bool{}, svcs: map[string]bool{}, tasks: map[string]bool{}, gone: map[string]bool{},
		blockedNets: map[string]bool{}, blockedSvcs: map[string]bool{}, blockedTasks: map[string]bool{},
		rel: &ipamv1.ReleaseRequest{},
	}
}

func (w *work) releases() int {
	return len(w.rel.GetNetworks()) + len(w.rel.GetNodeSubnets()) + len(w.rel.GetAddresses())
}

func (w *work) busy() bool {
	return w.releases() > 0 || len(w.nets) > 0 || len(w.svcs) > 0 || len(w.tasks) > 0 || len(w.gone) > 0
}

// unblock offers the blocked work again.
func (w *work) unblock() {
	for id := range w.blockedNets {
		w.nets[id] = true
	}
	for id := range w.blockedSvcs {
		w.svcs[id] = true
	}
	for id := range w.blockedTasks {
		w.tasks[id] = true
	}
	clear(w.blockedNets)
	clear(w.blockedSvcs)
	clear(w.blockedTasks)
}

// requeue puts back the items of a batch that was not committed.
func (w *work) requeue(b *batch) {
	for _, l := range []struct {
		ids []string
		set map[string]bool
	}{{b.nets, w.nets}, {b.svcs, w.svcs}, {b.tasks, w.tasks}, {b.gone, w.gone}} {
		for _, id := range l.ids {
			l.set[id] = true
		}
	}
}

func (w *work) releaseAddr(network, owner string) {
	w.rel.Addresses = append(w.rel.Addresses, &ipamv1.AddressRelease{NetworkId: network, Owner: owner})
}

// releaseTask releases the addresses of a task that recorded them.
func (w *work) releaseTask(t *objectv1.Task) {
	for _, a := range t.GetNetworks() {
		if a.GetAddr() != "" {
			w.releaseAddr(a.GetNetworkId(), t.Id)
		}
	}
}

// Run allocates until ctx ends.
func (a *Allocator) Run(ctx context.Context) error {
	for {
		err := a.run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		// The watch closed (this stage fell behind, or the store was
		// restored from a snapshot): start over from the store, in place,
		// as only this stage's picture is stale.
		a.log.Warn("state watch closed (fell behind, or the state was restored); starting over from the store")
	}
}

func (a *Allocator) run(ctx context.Context) error {
	w := newWork()
	events, cancel := a.st.ViewAndWatch(func(tx *state.ReadTx) {
		for _, n := range tx.Networks() {
			if n.GetSubnet() == "" {
				w.nets[n.Id] = true
			}
			for node := range n.GetNodeSubnets() {
				if tx.Node(node) == nil {
					w.gone[node] = true
				}
			}
		}
		for _, s := range tx.Services() {
			w.svcs[s.Id] = true
		}
		for _, t := range tx.TasksByDesiredState(objectv1.TaskState_TASK_STATE_RUNNING) {
			if needsAddress(t) {
				w.tasks[t.Id] = true
			}
		}
	})
	defer cancel()
	// A new picture of the store: the plugin is restored from it first.
	a.restoreID = 0

	retry := time.NewTicker(retryBlocked)
	defer retry.Stop()
	backoff := minBackoff
	for {
		n, ok := drain(events, func(ev state.Event) { a.mark(ev, w) })
		if !ok {
			return nil
		}
		// Changes still arriving (a big write being delivered): gather
		// them into a full batch first.
		if n > 0 && len(w.tasks) < batchSize && !a.gather(ctx, events, w) {
			return nil
		}
		if w.busy() {
			err := a.step(ctx, w)
			switch {
			case err == nil:
				backoff = minBackoff
				continue
			case ctx.Err() != nil:
				return nil
			case errors.Is(err, sdk.ErrUnavailable), errors.Is(err, sdk.ErrFailedPrecondition),
				errors.Is(err, context.DeadlineExceeded), errors.Is(err, errBadReply):
				// The plugin restarts, lost its state, or answered out of
				// contract; or a commit failed. Whatever the plugin holds
				// that the store does not is void: restore it.
				a.restoreID = 0
				a.log.Warn("allocation delayed; retrying", "error", err, "backoff", backoff)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, maxBackoff)
				continue
			default:
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-retry.C:
			w.unblock()
			continue
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			a.mark(ev, w)
		}
		if !a.gather(ctx, events, w) {
			return nil
		}
	}
}

// gather marks the events that arrive within settle, or until a batch is
// full. It returns false when ctx ended or the watch closed.
func (a *Allocator) gather(ctx context.Context, events <-chan state.Event, w *work) bool {
	timer := time.NewTimer(settle)
	defer timer.Stop()
	for len(w.tasks) < batchSize {
		select {
		case <-ctx.Done():
			return false
		case ev, ok := <-events:
			if !ok {
				return false
			}
			a.mark(ev, w)
		case <-timer.C:
			return true
		}
	}
	return true
}

// drain hands fn every event already queued, without waiting, and says
// how many; ok is false when the watch closed.
func drain(events <-chan state.Event, fn func(state.Event)) (n int, ok bool) {
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return n, false
			}
			fn(ev)
			n++
		default:
			return n, true
		}
	}
}

// mark records what one store change means: work to do, or allocations the
// store no longer holds, to release.
func (a *Allocator) mark(ev state.Event, w *work) {
	switch {
	case ev.Network != nil:
		n, old := ev.Network, ev.OldNetwork
		if ev.Kind == deleteKind {
			delete(w.nets, n.Id)
			delete(w.blockedNets, n.Id)
			if n.GetSubnet() != "" {
				w.rel.Networks = append(w.rel.Networks, n.Id)
			}
			return
		}
		if n.GetSubnet() == "" {
			w.nets[n.Id] = true
		}
		for node, s := range old.GetNodeSubnets() {
			if n.GetNodeSubnets()[node] != s {
				w.rel.NodeSubnets = append(w.rel.NodeSubnets, &ipamv1.NodeSubnetRelease{NetworkId: n.Id, NodeId: node})
			}
		}
		if n.GetSubnet() != "" && old.GetSubnet() == "" {
			w.unblock() // what waited for this subnet
		}
	case ev.Service != nil:
		s := ev.Service
		if ev.Kind == deleteKind {
			delete(w.svcs, s.Id)
			delete(w.blockedSvcs, s.Id)
			for _, v := range s.GetVirtualIps() {
				w.releaseAddr(v.GetNetworkId(), s.Id)
			}
			return
		}
		for _, v := range ev.OldService.GetVirtualIps() {
			if vipOf(s, v.GetNetworkId()) != v.GetAddr() {
				w.releaseAddr(v.GetNetworkId(), s.Id)
			}
		}
		w.svcs[s.Id] = true
	case ev.Task != nil:
		t, old := ev.Task, ev.OldTask
		if ev.Kind == deleteKind {
			delete(w.tasks, t.Id)
			delete(w.blockedTasks, t.Id)
			if Holds(t) {
				w.releaseTask(t)
			}
			return
		}
		if old != nil && Holds(old) && !Holds(t) {
			w.releaseTask(old)
		}
		if needsAddress(t) {
			w.tasks[t.Id] = true
		} else {
			delete(w.tasks, t.Id)
			delete(w.blockedTasks, t.Id)
		}
	case ev.Node != nil:
		if ev.Kind == deleteKind {
			w.gone[ev.Node.Id] = true
		}
	}
}

func vipOf(s *objectv1.Service, networkID string) string {
	for _, v := range s.GetVirtualIps() {
		if v.GetNetworkId() == networkID {
			return v.GetAddr()
		}
	}
	return ""
}

// step restores the plugin if it must be, sends the pending releases, then
// one batch of allocations, and commits it.
func (a *Allocator) step(ctx context.Context, w *work) error {
	client, err := a.plugin.Get(ctx)
	if err != nil {
		return err
	}
	if a.restoreID == 0 {
		if err := a.restore(ctx, client); err != nil {
			return err
		}
		// The restore carried the store as it is now: every release
		// recorded so far is in it.
		w.rel = &ipamv1.ReleaseRequest{}
		// Refusals by the plugin before may not hold after.
		w.unblock()
	}
	if w.releases() > 0 {
		w.rel.RestoreId = a.restoreID
		if _, err := client.Release(ctx, w.rel); err != nil {
			return fmt.Errorf("ipam plugin: release: %w", err)
		}
		a.log.Debug("released", "networks", len(w.rel.GetNetworks()), "node_subnets", len(w.rel.GetNodeSubnets()), "addresses", len(w.rel.GetAddresses()))
		w.rel = &ipamv1.ReleaseRequest{}
		w.unblock() // what did not fit may fit now
	}
	b := a.build(w)
	if b.empty() {
		return nil
	}
	var resp *ipamv1.AllocateResponse
	if len(b.req.GetSubnets())+len(b.req.GetAddresses()) > 0 {
		b.req.RestoreId = a.restoreID
		resp, err = client.Allocate(ctx, b.req)
		if err != nil {
			w.requeue(b)
			return fmt.Errorf("ipam plugin: allocate: %w", err)
		}
		if err := b.validate(resp); err != nil {
			w.requeue(b)
			a.log.Error("ipam plugin reply refused", "error", err)
			return err
		}
	}
	if err := a.commit(ctx, w, b, resp); err != nil {
		w.requeue(b)
		return err
	}
	return nil
}

// restore replays every recorded allocation into the plugin.
func (a *Allocator) restore(ctx context.Context, client ipam.IPAM) error {
	req := &ipamv1.RestoreRequest{RestoreId: rand.Uint64() | 1}
	a.st.View(func(tx *state.ReadTx) { fillRestore(tx, req) })
	if _, err := client.Restore(ctx, req); err != nil {
		return fmt.Errorf("ipam plugin: restore: %w", err)
	}
	a.restoreID = req.RestoreId
	a.log.Info("ipam plugin restored from the store", "networks", len(req.GetNetworks()), "addresses", len(req.GetAddresses()))
	return nil
}

// fillRestore fills req with every allocation the store records.
func fillRestore(tx *state.ReadTx, req *ipamv1.RestoreRequest) {
	has := map[string]bool{}
	for _, n := range tx.Networks() {
		if n.GetSubnet() == "" {
			continue
		}
		has[n.Id] = true
		req.Networks = append(req.Networks, &ipamv1.NetworkState{
			NetworkId: n.Id, Subnet: n.GetSubnet(), NodePrefixLen: n.GetNodePrefixLen(), NodeSubnets: n.GetNodeSubnets(),
		})
	}
	for _, s := range tx.Services() {
		for _, v := range s.GetVirtualIps() {
			if has[v.GetNetworkId()] {
				req.Addresses = append(req.Addresses, &ipamv1.AddressState{NetworkId: v.GetNetworkId(), Owner: s.Id, Addr: v.GetAddr()})
			}
		}
	}
	for _, t := range tx.Tasks() {
		if !Holds(t) {
			continue
		}
		for _, at := range t.GetNetworks() {
			if at.GetAddr() != "" && has[at.GetNetworkId()] {
				req.Addresses = append(req.Addresses, &ipamv1.AddressState{NetworkId: at.GetNetworkId(), Owner: t.Id, NodeId: t.GetNodeId(), Addr: at.GetAddr()})
			}
		}
	}
}
