package state

import (
	"cmp"
	"slices"
	"strings"
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
	return indexed(tx, k, func(t *tables) entries[T] { return k.table(t).all() })
}

// indexed returns the objects that sel picks from an index, sorted by ID.
func indexed[T object](tx *ReadTx, k *kindOf[T], sel func(*tables) entries[T]) []T {
	out := merge(tx, k, sel)
	slices.SortFunc(out, func(a, b T) int { return strings.Compare(a.GetId(), b.GetId()) })
	return out
}

// merge returns, unsorted, the objects sel picks from the store's tables that
// the Tx did not touch, and those it picks from the Tx's own writes.
func merge[T object](tx *ReadTx, k *kindOf[T], sel func(*tables) entries[T]) []T {
	base := sel(tx.t)
	if tx.ov == nil {
		out := make([]T, 0, base.len())
		base.each(func(v T) { out = append(out, v) })
		return out
	}
	over := sel(tx.ov.t)
	out := make([]T, 0, base.len()+over.len())
	each(tx, k, sel, func(v T) { out = append(out, v) })
	return out
}

// each calls fn for every object merge would return, without allocating.
func each[T object](tx *ReadTx, k *kindOf[T], sel func(*tables) entries[T], fn func(T)) {
	if tx.ov == nil {
		sel(tx.t).each(fn)
		return
	}
	sel(tx.t).each(func(v T) {
		if !tx.ov.shadows(k.kind, v.GetId()) {
			fn(v)
		}
	})
	sel(tx.ov.t).each(fn)
}

// byName returns the object of the named kind k whose name is name, or nil.
func byName[T object](tx *ReadTx, k *kindOf[T], name string) T {
	if tx.ov != nil {
		for _, e := range k.byName(tx.ov.t).get(name).list {
			return e.v
		}
	}
	for _, e := range k.byName(tx.t).get(name).list {
		if !tx.ov.shadows(k.kind, e.v.GetId()) {
			return e.v
		}
	}
	var zero T
	return zero
}

// allByName returns every object of the named kind k, sorted by name, then
// ID (names are unique, but the order must not depend on that).
func allByName[T object](tx *ReadTx, k *kindOf[T]) []T {
	out := merge(tx, k, func(t *tables) entries[T] { return k.table(t).all() })
	slices.SortFunc(out, func(a, b T) int {
		return cmp.Or(strings.Compare(k.nameOf(a), k.nameOf(b)), strings.Compare(a.GetId(), b.GetId()))
	})
	return out
}
