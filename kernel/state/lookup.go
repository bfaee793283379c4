package state

import (
	"fmt"
	"slices"
	"strings"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// The Lookup methods resolve what a person types on the command line. They
// scan the objects of one kind (no index serves prefixes); that is fine for
// the rate at which people type commands.

// maxListed bounds how many candidates an ambiguity error names.
const maxListed = 5

// LookupNode resolves ref to a node: an exact ID, else an exact name
// (spec.annotations.name, else description.hostname), else a unique ID
// prefix. A ref matching several nodes gives an sdk.ErrFailedPrecondition
// error naming them; none, sdk.ErrNotFound.
func (tx *ReadTx) LookupNode(ref string) (*objectv1.Node, error) {
	return lookup(tx, nodeKind, ref,
		func(n *objectv1.Node) string { return n.GetSpec().GetAnnotations().GetName() },
		func(n *objectv1.Node) string { return n.GetDescription().GetHostname() })
}

// LookupService resolves ref to a service: an exact ID, else its name, else a
// unique ID prefix. Errors are those of LookupNode.
func (tx *ReadTx) LookupService(ref string) (*objectv1.Service, error) {
	return lookupNamed(tx, serviceKind, ref)
}

// LookupNetwork resolves ref to a network: an exact ID, else its name, else
// a unique ID prefix. Errors are those of LookupNode.
func (tx *ReadTx) LookupNetwork(ref string) (*objectv1.Network, error) {
	return lookupNamed(tx, networkKind, ref)
}

// LookupSecret resolves ref to a secret: an exact ID, else its name, else
// a unique ID prefix. Errors are those of LookupNode.
func (tx *ReadTx) LookupSecret(ref string) (*objectv1.Secret, error) {
	return lookupNamed(tx, secretKind, ref)
}

// LookupConfig resolves ref to a config: an exact ID, else its name, else
// a unique ID prefix. Errors are those of LookupNode.
func (tx *ReadTx) LookupConfig(ref string) (*objectv1.Config, error) {
	return lookupNamed(tx, configKind, ref)
}

// LookupTask resolves ref to a task: an exact ID, else a unique ID prefix.
// Errors are those of LookupNode.
func (tx *ReadTx) LookupTask(ref string) (*objectv1.Task, error) {
	return lookup(tx, taskKind, ref)
}

// lookupNamed resolves ref to an object of a named kind, through the name
// index before any scan.
func lookupNamed[T object](tx *ReadTx, k *kindOf[T], ref string) (T, error) {
	var zero T
	if ref == "" {
		return zero, emptyRef(k)
	}
	if v := get(tx, k, ref); v != zero {
		return v, nil
	}
	if v := byName(tx, k, ref); v != zero {
		return v, nil
	}
	return lookup(tx, k, ref)
}

// lookup matches ref against, in order, the ID, each of names, and ID
// prefixes, in one pass over the objects of kind k.
func lookup[T object](tx *ReadTx, k *kindOf[T], ref string, names ...func(T) string) (T, error) {
	var zero T
	if ref == "" {
		return zero, emptyRef(k)
	}
	if v := get(tx, k, ref); v != zero {
		return v, nil
	}
	// matches[i] for names[i], matches[len(names)] for prefixes.
	matches := make([][]T, len(names)+1)
	each(tx, k, func(t *tables) entries[T] { return k.table(t).all() }, func(v T) {
		for i, name := range names {
			if name(v) == ref {
				matches[i] = append(matches[i], v)
			}
		}
		if strings.HasPrefix(v.GetId(), ref) {
			matches[len(names)] = append(matches[len(names)], v)
		}
	})
	for i, m := range matches {
		switch {
		case len(m) == 1:
			return m[0], nil
		case len(m) > 1:
			what := "ID prefix"
			if i < len(names) {
				what = "name"
			}
			return zero, ambiguous(k, ref, what, m)
		}
	}
	return zero, fmt.Errorf("%s %q: %w", k.name, ref, sdk.ErrNotFound)
}

func emptyRef[T object](k *kindOf[T]) error {
	return fmt.Errorf("%s reference is empty: %w", k.name, sdk.ErrInvalidArgument)
}

func ambiguous[T object](k *kindOf[T], ref, what string, m []T) error {
	ids := make([]string, len(m))
	for i, v := range m {
		ids[i] = v.GetId()
	}
	slices.Sort(ids)
	list := strings.Join(ids[:min(len(ids), maxListed)], ", ")
	if len(ids) > maxListed {
		list += fmt.Sprintf(" and %d more", len(ids)-maxListed)
	}
	return fmt.Errorf("%s %q: ambiguous %s, matches %s: %w", k.name, ref, what, list, sdk.ErrFailedPrecondition)
}
