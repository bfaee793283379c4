package state

import (
	"cmp"
	"slices"
	"strings"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// The generic readers below merge the store's tables with a Tx's own writes
// (when tx.ov is set): an ID the Tx touched is read from the overlay only,
// whether the Tx wrote or deleted it.

// get returns the object of kind k with this ID, or nil.
func get[T object](tx *ReadTx, k *kindOf[T], id string) T {
	if tx.ov.shadows(k.kind, id) {
		return k.table(tx.ov.t).get(id)
	}
	return k.table(tx.t).get(id)
}

// all returns every object of kind k, sorted by ID.
func all[T object](tx *ReadTx, k *kindOf[T]) []T {
	return indexed(tx, k, func(t *tables) map[string]T { return k.table(t).byID })
}

// indexed returns the objects that sel picks from an index, sorted by ID.
func indexed[T object](tx *ReadTx, k *kindOf[T], sel func(*tables) map[string]T) []T {
	out := merge(tx, k, sel)
	slices.SortFunc(out, func(a, b T) int { return strings.Compare(a.GetId(), b.GetId()) })
	return out
}

// merge returns, unsorted, the objects sel picks from the store's tables that
// the Tx did not touch, and those it picks from the Tx's own writes.
func merge[T object](tx *ReadTx, k *kindOf[T], sel func(*tables) map[string]T) []T {
	base := sel(tx.t)
	if tx.ov == nil {
		out := make([]T, 0, len(base))
		for _, v := range base {
			out = append(out, v)
		}
		return out
	}
	over := sel(tx.ov.t)
	out := make([]T, 0, len(base)+len(over))
	for id, v := range base {
		if !tx.ov.shadows(k.kind, id) {
			out = append(out, v)
		}
	}
	for _, v := range over {
		out = append(out, v)
	}
	return out
}

// each calls fn for every object merge would return, without allocating.
func each[T object](tx *ReadTx, k *kindOf[T], sel func(*tables) map[string]T, fn func(T)) {
	for id, v := range sel(tx.t) {
		if !tx.ov.shadows(k.kind, id) {
			fn(v)
		}
	}
	if tx.ov != nil {
		for _, v := range sel(tx.ov.t) {
			fn(v)
		}
	}
}

// sortByName sorts services by name, then ID (names are unique, but the
// order must not depend on that).
func sortByName(s []*objectv1.Service) {
	slices.SortFunc(s, func(a, b *objectv1.Service) int {
		return cmp.Or(strings.Compare(serviceName(a), serviceName(b)), strings.Compare(a.GetId(), b.GetId()))
	})
}
