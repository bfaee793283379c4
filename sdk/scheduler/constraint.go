package scheduler

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
)

// This file is the placement constraint language, the one every part that
// reads constraints uses: the control API validates specs with it, the
// schedulers match nodes with it, and schedulertest checks placements with
// it.
//
// A constraint is KEY==VALUE or KEY!=VALUE. The first "==" or "!=" splits the
// key from the value; white space around both is ignored. The keys are the
// node attributes:
//
//	node.id              the node's ID
//	node.hostname        its host name
//	node.role            worker or manager
//	node.platform.os     the OS of its platform, "linux" of "linux/arm64"
//	node.platform.arch   the rest of its platform, "arm64" or "arm/v7"
//	node.labels.LABEL    the value of its label LABEL
//
// Values compare exactly, byte for byte, except host names, which compare
// without regard to ASCII case, as DNS names do (RFC 4343): a node whose
// host name is "Web-1" meets node.hostname==web-1. Docker's swarm mode
// ignores case in every value; shoal does not, because IDs and label values
// are the operator's own strings, where "SSD" and "ssd" may well mean two
// things. Keys are exact: "NODE.ROLE" is refused rather than guessed at.
//
// A node without a label differs from every value: node.labels.rack!=r1
// holds on a node with no rack label, and node.labels.rack==r1 does not, as
// in Docker's swarm mode.

// The attribute keys besides node.labels.<label>.
const (
	KeyID       = "node.id"
	KeyHostname = "node.hostname"
	KeyRole     = "node.role"
	KeyOS       = "node.platform.os"
	KeyArch     = "node.platform.arch"
	// LabelPrefix starts the key of a node label: node.labels.rack.
	LabelPrefix = "node.labels."
)

// keyList is the keys, for messages.
const keyList = KeyID + ", " + KeyHostname + ", " + KeyRole + ", " + KeyOS + ", " + KeyArch + " or " + LabelPrefix + "<label>"

// The constraint operators.
const (
	OpEqual    = "=="
	OpNotEqual = "!="
)

// attrKind is which node attribute an Attribute names.
type attrKind uint8

const (
	attrNone attrKind = iota
	attrID
	attrHostname
	attrRole
	attrOS
	attrArch
	attrLabel
)

var attrKeys = map[string]attrKind{
	KeyID:       attrID,
	KeyHostname: attrHostname,
	KeyRole:     attrRole,
	KeyOS:       attrOS,
	KeyArch:     attrArch,
}

// Attribute is a node attribute that constraints and placement preferences
// (spread=node.labels.rack) name. The zero Attribute names nothing: no node
// has it.
type Attribute struct {
	kind  attrKind
	label string // for attrLabel
}

// ParseAttribute parses an attribute key: node.id, node.hostname,
// node.role, node.platform.os, node.platform.arch or node.labels.<label>.
// Its error is a *SyntaxError, of kind sdk.ErrInvalidArgument.
func ParseAttribute(key string) (Attribute, error) {
	a, reason := parseAttribute(key)
	if reason != "" {
		return Attribute{}, &SyntaxError{What: "node attribute", Expr: key, Reason: reason}
	}
	return a, nil
}

func parseAttribute(key string) (Attribute, string) {
	if k, ok := attrKeys[key]; ok {
		return Attribute{kind: k}, ""
	}
	if label, ok := strings.CutPrefix(key, LabelPrefix); ok && label != "" {
		return Attribute{kind: attrLabel, label: label}, ""
	}
	if strings.HasPrefix(key, "engine.labels.") {
		// Docker users write these; say what to write instead.
		return Attribute{}, "must be " + keyList + " (shoal has no engine labels; label the node and use " + LabelPrefix + "<label>)"
	}
	return Attribute{}, "must be " + keyList
}

// String returns the attribute's key.
func (a Attribute) String() string {
	switch a.kind {
	case attrID:
		return KeyID
	case attrHostname:
		return KeyHostname
	case attrRole:
		return KeyRole
	case attrOS:
		return KeyOS
	case attrArch:
		return KeyArch
	case attrLabel:
		return LabelPrefix + a.label
	}
	return ""
}

// Label returns the label the attribute names, and whether it names one.
func (a Attribute) Label() (string, bool) { return a.label, a.kind == attrLabel }

// Value returns the attribute of n, and whether n has it: a node may lack a
// label (and the zero Attribute); it has every other attribute, if only as
// "" (a node that reports no platform).
func (a Attribute) Value(n *schedulerv1.NodeInfo) (string, bool) {
	switch a.kind {
	case attrID:
		return n.GetId(), true
	case attrHostname:
		return n.GetHostname(), true
	case attrRole:
		return RoleName(n.GetRole()), true
	case attrOS:
		os, _, _ := strings.Cut(n.GetPlatform(), "/")
		return os, true
	case attrArch:
		_, arch, _ := strings.Cut(n.GetPlatform(), "/")
		return arch, true
	case attrLabel:
		v, ok := n.GetLabels()[a.label]
		return v, ok
	}
	return "", false
}

// RoleName is a role as constraints name it: "worker", "manager", or "" for
// an unspecified role.
func RoleName(r objectv1.NodeRole) string {
	switch r {
	case objectv1.NodeRole_NODE_ROLE_WORKER:
		return "worker"
	case objectv1.NodeRole_NODE_ROLE_MANAGER:
		return "manager"
	}
	return ""
}

// Constraint is one parsed placement constraint: a node attribute must
// equal, or differ from, a value. The zero Constraint matches no node.
type Constraint struct {
	attr  Attribute
	equal bool // == rather than !=
	value string
}

// ParseConstraint parses "KEY==VALUE" or "KEY!=VALUE" (see the language
// above). Beyond the syntax it checks the key, and that node.role is
// compared with worker or manager, the values a role can have. Its error is
// a *SyntaxError, of kind sdk.ErrInvalidArgument, whose reason names the
// problem.
//
// It sets no bounds on lengths: the control API does, and a scheduler
// should match what the kernel sends.
func ParseConstraint(expr string) (Constraint, error) {
	c, reason := parseConstraint(expr)
	if reason != "" {
		return Constraint{}, &SyntaxError{What: "constraint", Expr: expr, Reason: reason}
	}
	return c, nil
}

func parseConstraint(expr string) (Constraint, string) {
	eq, ne := strings.Index(expr, OpEqual), strings.Index(expr, OpNotEqual)
	i, op := eq, OpEqual
	if ne >= 0 && (eq < 0 || ne < eq) {
		i, op = ne, OpNotEqual
	}
	if i < 0 {
		return Constraint{}, "must be KEY==VALUE or KEY!=VALUE"
	}
	key, value := strings.TrimSpace(expr[:i]), strings.TrimSpace(expr[i+len(op):])
	switch {
	case key == "":
		return Constraint{}, "the key before " + op + " is missing"
	case strings.ContainsFunc(key, func(r rune) bool {
		return r == '=' || r == '!' || unicode.IsSpace(r) || unicode.IsControl(r)
	}):
		// '=' and '!' would make "k! ==v" print as "k!==v", which reads
		// back as k != "=v".
		return Constraint{}, "the key must not contain '=', '!', white space or control characters"
	case value == "":
		return Constraint{}, "the value after " + op + " is missing"
	case strings.Contains(value, OpEqual) || strings.Contains(value, OpNotEqual):
		return Constraint{}, "the value must not contain == or != (one operator per constraint)"
	case strings.ContainsFunc(value, unicode.IsControl):
		return Constraint{}, "the value must not contain control characters"
	}
	a, reason := parseAttribute(key)
	if reason != "" {
		return Constraint{}, "the key " + reason
	}
	if a.kind == attrRole && value != "worker" && value != "manager" {
		return Constraint{}, "node.role must be compared with worker or manager"
	}
	return Constraint{attr: a, equal: op == OpEqual, value: value}, ""
}

// Attribute returns the node attribute c compares.
func (c Constraint) Attribute() Attribute { return c.attr }

// Op returns OpEqual or OpNotEqual.
func (c Constraint) Op() string {
	if c.equal {
		return OpEqual
	}
	return OpNotEqual
}

// Value returns the value c compares the attribute with, trimmed.
func (c Constraint) Value() string { return c.value }

// String returns c as an expression, without the white space it may have
// been written with; ParseConstraint reads it back as c.
func (c Constraint) String() string { return c.attr.String() + c.Op() + c.value }

// Match reports whether node n meets c.
func (c Constraint) Match(n *schedulerv1.NodeInfo) bool {
	if c.attr.kind == attrNone {
		return false
	}
	v, ok := c.attr.Value(n)
	if !ok {
		return !c.equal
	}
	return c.same(v) == c.equal
}

// same reports whether an attribute value v is c's value.
func (c Constraint) same(v string) bool {
	if c.attr.kind == attrHostname {
		return equalFoldASCII(v, c.value)
	}
	return v == c.value
}

// Explain says why node n does not meet c, for people ("node.labels.rack
// is "r2", not "r1""), or returns "" when it does.
func (c Constraint) Explain(n *schedulerv1.NodeInfo) string {
	if c.Match(n) {
		return ""
	}
	if c.attr.kind == attrNone {
		return "the constraint is empty"
	}
	v, ok := c.attr.Value(n)
	switch {
	case !ok:
		return fmt.Sprintf("%s is not set", c.attr)
	case !c.equal && c.attr.kind == attrHostname:
		return fmt.Sprintf("%s is %s, which is %s ignoring case", c.attr, quote(v), quote(c.value))
	case !c.equal:
		return fmt.Sprintf("%s is %s", c.attr, quote(v))
	case c.attr.kind == attrHostname:
		return fmt.Sprintf("%s is %s, not %s (even ignoring case)", c.attr, quote(v), quote(c.value))
	}
	return fmt.Sprintf("%s is %s, not %s", c.attr, quote(v), quote(c.value))
}

// Constraints are the constraints of one task; a node must meet them all.
type Constraints []Constraint

// ParseConstraints parses every expression of exprs, and fails on the first
// that does not parse.
func ParseConstraints(exprs []string) (Constraints, error) {
	cs := make(Constraints, len(exprs))
	for i, expr := range exprs {
		c, err := ParseConstraint(expr)
		if err != nil {
			return nil, err
		}
		cs[i] = c
	}
	return cs, nil
}

// Match reports whether n meets every constraint of cs.
func (cs Constraints) Match(n *schedulerv1.NodeInfo) bool {
	for _, c := range cs {
		if !c.Match(n) {
			return false
		}
	}
	return true
}

// Explain says why n does not meet cs, naming the first constraint it
// fails ("node.labels.rack==r1: node.labels.rack is not set"), or returns
// "" when n meets them all.
func (cs Constraints) Explain(n *schedulerv1.NodeInfo) string {
	for _, c := range cs {
		if why := c.Explain(n); why != "" {
			return c.String() + ": " + why
		}
	}
	return ""
}

// SyntaxError is why an expression is not a constraint or a node attribute.
// It is of kind sdk.ErrInvalidArgument.
type SyntaxError struct {
	// What is "constraint" or "node attribute".
	What string
	// Expr is the expression as given.
	Expr string
	// Reason says what is wrong and what is allowed ("must be KEY==VALUE or
	// KEY!=VALUE"), without the expression.
	Reason string
}

func (e *SyntaxError) Error() string {
	return "invalid " + e.What + " " + quote(e.Expr) + ": " + e.Reason
}

// Unwrap makes errors.Is(e, sdk.ErrInvalidArgument) true.
func (e *SyntaxError) Unwrap() error { return sdk.ErrInvalidArgument }

// maxQuoted bounds what a message quotes of an expression or a value: a
// label value may be a 4 KiB document, and the start says which it is.
const maxQuoted = 64

// quote quotes s, cut after maxQuoted bytes (at a rune boundary).
func quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	cut := maxQuoted
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}

// equalFoldASCII reports whether a and b are equal ignoring ASCII case,
// and only ASCII case: DNS names fold A-Z and nothing else (RFC 4343), so
// that "K" (the Kelvin sign) is not "k" as it would be for strings.EqualFold.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
