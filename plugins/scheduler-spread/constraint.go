package main

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// attrKind is which node attribute a constraint or a preference names.
type attrKind uint8

const (
	attrID attrKind = iota + 1
	attrHostname
	attrRole
	attrOS
	attrArch
	attrLabel
)

// attrKeys are the attribute names besides node.labels.<label>.
var attrKeys = map[string]attrKind{
	"node.id":            attrID,
	"node.hostname":      attrHostname,
	"node.role":          attrRole,
	"node.platform.os":   attrOS,
	"node.platform.arch": attrArch,
}

const labelPrefix = "node.labels."

// attr is a node attribute: node.id, node.hostname, node.role,
// node.platform.os, node.platform.arch or node.labels.<label>.
type attr struct {
	kind  attrKind
	label string // for attrLabel
}

// parseAttr parses an attribute name.
func parseAttr(key string) (attr, error) {
	if k, ok := attrKeys[key]; ok {
		return attr{kind: k}, nil
	}
	if label, ok := strings.CutPrefix(key, labelPrefix); ok && label != "" {
		return attr{kind: attrLabel, label: label}, nil
	}
	return attr{}, fmt.Errorf("unknown node attribute %q: want node.id, node.hostname, node.role, node.platform.os, node.platform.arch or node.labels.<label>", key)
}

// value returns the attribute of n, and whether n has it (a node may lack
// a label; it has every other attribute).
func (a attr) value(n *node) (string, bool) {
	switch a.kind {
	case attrID:
		return n.id, true
	case attrHostname:
		return n.hostname, true
	case attrRole:
		return n.role, true
	case attrOS:
		return n.os, true
	case attrArch:
		return n.arch, true
	}
	v, ok := n.labels[a.label]
	return v, ok
}

// constraint is "key==value" or "key!=value".
type constraint struct {
	attr  attr
	key   string // as written, trimmed
	equal bool   // == rather than !=
	value string
}

// String returns c as an expression, without the white space it may have
// been written with.
func (c constraint) String() string {
	op := "!="
	if c.equal {
		op = "=="
	}
	return c.key + op + c.value
}

// parseConstraint parses expr with the grammar the control API validates
// specs with: the first "==" or "!=" splits key from value, white space
// around both is ignored, the key holds no '=', '!' or white space, and the
// value no second operator.
func parseConstraint(expr string) (constraint, error) {
	eq, ne := strings.Index(expr, "=="), strings.Index(expr, "!=")
	i, equal := eq, true
	if ne >= 0 && (eq < 0 || ne < eq) {
		i, equal = ne, false
	}
	if i < 0 {
		return constraint{}, errors.New("want KEY==VALUE or KEY!=VALUE")
	}
	c := constraint{key: strings.TrimSpace(expr[:i]), equal: equal, value: strings.TrimSpace(expr[i+2:])}
	switch {
	case strings.ContainsFunc(c.key, func(r rune) bool {
		return r == '=' || r == '!' || unicode.IsSpace(r) || unicode.IsControl(r)
	}):
		return constraint{}, errors.New("the key holds '=', '!', white space or control characters")
	case c.value == "":
		return constraint{}, errors.New("the value is missing")
	case strings.Contains(c.value, "==") || strings.Contains(c.value, "!="):
		return constraint{}, errors.New("the value holds a second operator")
	case strings.ContainsFunc(c.value, unicode.IsControl):
		return constraint{}, errors.New("the value holds control characters")
	}
	a, err := parseAttr(c.key)
	if err != nil {
		return constraint{}, err
	}
	c.attr = a
	return c, nil
}

// match reports whether n meets c. A node without the label differs from
// every value: node.labels.rack!=r1 holds on a node with no rack label, as
// in Docker swarm mode. Host names compare without
// regard to case, as DNS names do; every other value compares exactly.
func (c constraint) match(n *node) bool {
	v, ok := c.attr.value(n)
	if !ok {
		return !c.equal
	}
	same := v == c.value
	if c.attr.kind == attrHostname {
		same = strings.EqualFold(v, c.value)
	}
	return same == c.equal
}
