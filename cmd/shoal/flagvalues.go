package main

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// The flag values below parse while the command line is parsed, so a value
// that cannot be parsed fails with the flag's name before any request is
// sent ("invalid argument "12XB" for "--limit-memory" flag: ...").

// choiceValue is a string flag restricted to a few choices.
type choiceValue struct {
	target  *string
	choices []string
}

func newChoiceValue(target *string, choices ...string) *choiceValue {
	return &choiceValue{target: target, choices: choices}
}

func (v *choiceValue) String() string { return *v.target }
func (v *choiceValue) Type() string   { return strings.Join(v.choices, "|") }

func (v *choiceValue) Set(s string) error {
	if !slices.Contains(v.choices, s) {
		return fmt.Errorf("want one of %s", strings.Join(v.choices, ", "))
	}
	*v.target = s
	return nil
}

// enumValue is a flag naming a value of a generated enum by its short name,
// e.g. "on-failure" for RESTART_CONDITION_ON_FAILURE. UNSPECIFIED is not
// offered: leaving the flag out is how to leave the field unset.
type enumValue[E ~int32] struct {
	target *E
	prefix string
	names  map[int32]string
}

func newEnumValue[E ~int32](target *E, prefix string, names map[int32]string) *enumValue[E] {
	return &enumValue[E]{target: target, prefix: prefix, names: names}
}

func (v *enumValue[E]) choices() []string {
	nums := make([]int32, 0, len(v.names))
	for n := range v.names {
		if n != 0 {
			nums = append(nums, n)
		}
	}
	slices.Sort(nums)
	out := make([]string, len(nums))
	for i, n := range nums {
		out[i] = enumName(v.names[n], v.prefix)
	}
	return out
}

func (v *enumValue[E]) String() string {
	if *v.target == 0 {
		return ""
	}
	return enumName(v.names[int32(*v.target)], v.prefix)
}

func (v *enumValue[E]) Type() string { return strings.Join(v.choices(), "|") }

func (v *enumValue[E]) Set(s string) error {
	for n, full := range v.names {
		if n != 0 && enumName(full, v.prefix) == s {
			*v.target = E(n)
			return nil
		}
	}
	return fmt.Errorf("want one of %s", strings.Join(v.choices(), ", "))
}

// kvValue collects KEY=VALUE flags, keeping their order. With optionalValue,
// a bare KEY means an empty value (as docker's labels do).
type kvValue struct {
	target        *[]string
	optionalValue bool
}

func (v *kvValue) String() string { return strings.Join(*v.target, ",") }
func (v *kvValue) Type() string   { return "KEY=VALUE" }

func (v *kvValue) Set(s string) error {
	key, _, hasValue := strings.Cut(s, "=")
	switch {
	case key == "":
		return errors.New("empty key")
	case !hasValue && !v.optionalValue:
		return errors.New("want KEY=VALUE")
	}
	*v.target = append(*v.target, s)
	return nil
}

// splitKV splits "KEY=VALUE" or "KEY".
func splitKV(s string) (key, value string) {
	key, value, _ = strings.Cut(s, "=")
	return key, value
}

// cpuValue is a decimal number of cores stored as nano CPUs.
type cpuValue struct{ target *int64 }

func (v cpuValue) String() string {
	if *v.target == 0 {
		return ""
	}
	return formatCPUs(*v.target)
}

func (v cpuValue) Type() string { return "decimal" }

func (v cpuValue) Set(s string) error {
	n, err := parseCPUs(s)
	if err != nil {
		return err
	}
	*v.target = n
	return nil
}

// memoryValue is a size in docker's units stored as bytes.
type memoryValue struct{ target *int64 }

func (v memoryValue) String() string {
	if *v.target == 0 {
		return ""
	}
	return formatMemory(*v.target)
}

func (v memoryValue) Type() string { return "bytes" }

func (v memoryValue) Set(s string) error {
	n, err := parseMemory(s)
	if err != nil {
		return err
	}
	*v.target = n
	return nil
}

// portsValue collects published ports. With published, a lone number is
// the published port (for --publish-rm), not the target port.
type portsValue struct {
	target    *[]*objectv1.PortConfig
	published bool
}

func (v portsValue) String() string {
	parts := make([]string, len(*v.target))
	for i, p := range *v.target {
		parts[i] = formatPort(p)
	}
	return strings.Join(parts, ",")
}

func (v portsValue) Type() string {
	if v.published {
		return "PUB[/PROTO]"
	}
	return "PUB:TARGET[/PROTO]"
}

func (v portsValue) Set(s string) error {
	p, err := parsePort(s)
	if err != nil {
		return err
	}
	if v.published && p.PublishedPort == 0 {
		p.PublishedPort, p.TargetPort = p.TargetPort, 0
	}
	*v.target = append(*v.target, p)
	return nil
}

// parsePort parses a published port in docker's short syntax,
// "[PUBLISHED:]TARGET[/PROTOCOL]", or its long one,
// "published=8080,target=80,protocol=udp,mode=host". Fields left out stay
// unset, for the server to default.
func parsePort(s string) (*objectv1.PortConfig, error) {
	if strings.Contains(s, "=") {
		return parseLongPort(s)
	}
	rest, proto, hasProto := strings.Cut(s, "/")
	if hasProto && proto == "" {
		return nil, errors.New("empty protocol")
	}
	pub, target, hasPub := strings.Cut(rest, ":")
	if !hasPub {
		pub, target = "", pub
	}
	p := &objectv1.PortConfig{Protocol: proto}
	var err error
	if p.TargetPort, err = parsePortNumber(target); err != nil {
		return nil, err
	}
	if hasPub {
		if p.PublishedPort, err = parsePortNumber(pub); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func parseLongPort(s string) (*objectv1.PortConfig, error) {
	p := &objectv1.PortConfig{}
	for field := range strings.SplitSeq(s, ",") {
		key, value, ok := strings.Cut(field, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not KEY=VALUE", field)
		}
		var err error
		switch key {
		case "published":
			p.PublishedPort, err = parsePortNumber(value)
		case "target":
			p.TargetPort, err = parsePortNumber(value)
		case "protocol":
			p.Protocol = value
		case "mode":
			mode := newEnumValue(&p.Mode, "PUBLISH_MODE_", objectv1.PublishMode_name)
			err = mode.Set(value)
		default:
			err = fmt.Errorf("unknown key %q (want published, target, protocol or mode)", key)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
	}
	return p, nil
}

func parsePortNumber(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("invalid port %q: want a number from 1 to 65535", s)
	}
	return uint32(n), nil
}

// prefsValue collects placement preferences, "spread=ATTRIBUTE".
type prefsValue struct{ target *[]string }

func (v prefsValue) String() string { return strings.Join(*v.target, ",") }
func (v prefsValue) Type() string   { return "spread=ATTR" }

func (v prefsValue) Set(s string) error {
	strategy, attr, ok := strings.Cut(s, "=")
	if !ok || strategy != "spread" || attr == "" {
		return errors.New("want spread=ATTRIBUTE, e.g. spread=node.labels.rack")
	}
	*v.target = append(*v.target, attr)
	return nil
}

// argsValue is a command line split into arguments.
type argsValue struct{ target *[]string }

func (v argsValue) String() string { return strings.Join(*v.target, " ") }
func (v argsValue) Type() string   { return "string" }

func (v argsValue) Set(s string) error {
	args, err := splitArgs(s)
	if err != nil {
		return err
	}
	*v.target = args
	return nil
}

// splitArgs splits a command line the way a POSIX shell splits words:
// blanks separate words, single quotes keep everything, double quotes keep
// everything but backslash escapes of \ and ", and a backslash outside quotes
// escapes the next character.
func splitArgs(s string) ([]string, error) {
	var (
		args  []string
		word  strings.Builder
		inArg bool
		quote byte
	)
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case quote == '\'':
			if ch == '\'' {
				quote = 0
			} else {
				word.WriteByte(ch)
			}
		case quote == '"':
			switch {
			case ch == '"':
				quote = 0
			case ch == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\'):
				i++
				word.WriteByte(s[i])
			default:
				word.WriteByte(ch)
			}
		case ch == ' ' || ch == '\t' || ch == '\n':
			if inArg {
				args = append(args, word.String())
				word.Reset()
				inArg = false
			}
		case ch == '\'' || ch == '"':
			quote, inArg = ch, true
		case ch == '\\':
			if i+1 == len(s) {
				return nil, errors.New("trailing backslash")
			}
			i++
			word.WriteByte(s[i])
			inArg = true
		default:
			word.WriteByte(ch)
			inArg = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if inArg {
		args = append(args, word.String())
	}
	return args, nil
}
