package state

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// SnapshotVersion is the raftv1.Snapshot format Snapshot writes and Restore
// reads.
const SnapshotVersion = 1

// Snapshot returns the whole state as of one applied index. Objects are
// sorted by ID, so equal states give equal snapshots. The objects are the
// stored ones (immutable, shared): marshaling the snapshot while later
// commands apply is safe, modifying it is not.
func (s *Store) Snapshot() *raftv1.Snapshot {
	snap := &raftv1.Snapshot{Version: SnapshotVersion}
	s.mu.RLock()
	t := s.t
	snap.Index = t.index
	if t.cluster != nil {
		snap.Clusters = []*objectv1.Cluster{t.cluster}
	}
	// Only the copying holds the lock; sorting happens after.
	snap.Nodes = values(&t.nodes)
	snap.Services = values(&t.services)
	snap.Tasks = values(&t.tasks)
	snap.Networks = values(&t.networks)
	snap.Secrets = values(&t.secrets)
	snap.Configs = values(&t.configs)
	snap.Requests = t.requests.list()
	s.mu.RUnlock()
	sortByID(snap.Nodes)
	sortByID(snap.Services)
	sortByID(snap.Tasks)
	sortByID(snap.Networks)
	sortByID(snap.Secrets)
	sortByID(snap.Configs)
	return snap
}

func values[T object](t *table[T]) []T {
	out := make([]T, 0, len(t.byID))
	for _, e := range t.byID {
		out = append(out, e.v)
	}
	return out
}

func sortByID[T object](s []T) {
	slices.SortFunc(s, func(a, b T) int { return strings.Compare(a.GetId(), b.GetId()) })
}

// Restore replaces the whole state with snap, which it takes ownership of.
// snap is checked first (format version, at most one cluster, no nil object,
// empty or duplicate ID, what the store requires of each kind, services,
// networks, secrets and configs named uniquely); if it is not valid, the
// error is of kind sdk.ErrInvalidArgument and the state is unchanged.
//
// Every watch is closed: watchers' pictures of the old state are void, and
// they must start over with ViewAndWatch.
func (s *Store) Restore(snap *raftv1.Snapshot) error {
	t, err := load(snap)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.t = t
	s.cluster.Store(t.cluster)
	s.closeWatchers()
	return nil
}

// load builds tables from a snapshot, checking it.
func load(snap *raftv1.Snapshot) (*tables, error) {
	if snap == nil {
		return nil, fmt.Errorf("no snapshot: %w", sdk.ErrInvalidArgument)
	}
	if v := snap.GetVersion(); v != SnapshotVersion {
		return nil, fmt.Errorf("format version %d, want %d: %w", v, SnapshotVersion, sdk.ErrInvalidArgument)
	}
	t := newTables()
	t.index = snap.GetIndex()
	switch cs := snap.GetClusters(); {
	case len(cs) > 1:
		return nil, fmt.Errorf("%d cluster objects, want at most 1: %w", len(cs), sdk.ErrInvalidArgument)
	case len(cs) == 1:
		if cs[0].GetId() == "" {
			return nil, fmt.Errorf("cluster with an empty id: %w", sdk.ErrInvalidArgument)
		}
		t.cluster = cs[0]
	}
	if err := loadAll(t, nodeKind, snap.GetNodes()); err != nil {
		return nil, err
	}
	if err := loadNamed(t, serviceKind, snap.GetServices()); err != nil {
		return nil, err
	}
	if err := loadAll(t, taskKind, snap.GetTasks()); err != nil {
		return nil, err
	}
	if err := loadNamed(t, networkKind, snap.GetNetworks()); err != nil {
		return nil, err
	}
	if err := loadNamed(t, secretKind, snap.GetSecrets()); err != nil {
		return nil, err
	}
	if err := loadNamed(t, configKind, snap.GetConfigs()); err != nil {
		return nil, err
	}
	if err := loadRequests(&t.requests, snap.GetRequests()); err != nil {
		return nil, err
	}
	return t, nil
}

func loadAll[T object](t *tables, k *kindOf[T], objs []T) error {
	var zero T
	tbl := k.table(t)
	for i, v := range objs {
		switch {
		case v == zero:
			return fmt.Errorf("%s %d: nil: %w", k.name, i, sdk.ErrInvalidArgument)
		case v.GetId() == "":
			return fmt.Errorf("%s %d: empty id: %w", k.name, i, sdk.ErrInvalidArgument)
		case tbl.get(v.GetId()) != zero:
			return fmt.Errorf("%s %s: duplicate id: %w", k.name, v.GetId(), sdk.ErrInvalidArgument)
		}
		if err := validateStored(k, v); err != nil {
			return fmt.Errorf("%s %s: %w", k.name, v.GetId(), err)
		}
		tbl.set(v.GetId(), v)
	}
	return nil
}

// loadNamed is loadAll for a named kind, whose names must also be unique.
func loadNamed[T object](t *tables, k *kindOf[T], objs []T) error {
	if err := loadAll(t, k, objs); err != nil {
		return err
	}
	x := k.byName(t)
	for _, name := range slices.Sorted(maps.Keys(x.sets)) {
		if set := x.get(name).list; len(set) > 1 {
			ids := make([]string, len(set))
			for i, e := range set {
				ids[i] = e.v.GetId()
			}
			slices.Sort(ids)
			return fmt.Errorf("%ss %s share the name %q: %w", k.name, strings.Join(ids, ", "), name, sdk.ErrInvalidArgument)
		}
	}
	return nil
}
