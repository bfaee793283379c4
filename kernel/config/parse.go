package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/shoalhq/shoal/sdk"
)

// Load reads the config file at path and parses it with Parse.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("load config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("load config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes a TOML config into Default() and validates it.
//
// It is strict: every key the kernel does not know is an error naming the key
// and its line, except inside [plugins.<kind>.config], which is the plugin's
// to check. Keys are case-sensitive (BurntSushi/toml alone would accept
// "Data_Dir" for "data_dir"). A value of the wrong type or a malformed
// duration is an error naming the key and its line; a syntax error names the
// line, the column and the last key the parser read. Every other problem comes back as sdk.FieldErrors, one per bad field,
// with the line where the field is set when the file sets it.
func Parse(data []byte) (Config, error) {
	c := Default()
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&c)
	if err != nil {
		return Config{}, decodeError(md, err)
	}
	pos := newPositions(data, md.Keys())

	var fe sdk.FieldErrors
	unknownKeys(&fe, md, pos)
	if !md.IsDefined("version") {
		fe.Add("version", "missing; this shoal reads files that start with version = %d", Version)
	}
	if err := c.Validate(); err != nil {
		var vfe sdk.FieldErrors
		if !errors.As(err, &vfe) {
			return Config{}, err
		}
		for _, f := range vfe {
			if line := pos.fieldLine(f.Field); line > 0 {
				f.Message += fmt.Sprintf(" (line %d)", line)
			}
			fe = append(fe, f)
		}
	}
	if err := fe.Err(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// unknownKeys records each key of the file the kernel did not decode, and
// each key decoded only thanks to BurntSushi/toml's case-insensitive match.
// A key inside a reported key (the keys of an unknown table) is not reported
// again.
func unknownKeys(fe *sdk.FieldErrors, md toml.MetaData, pos *positions) {
	var reported []toml.Key
	within := func(k toml.Key) bool {
		for _, r := range reported {
			if hasPrefix(k, r) {
				return true
			}
		}
		return false
	}
	add := func(k toml.Key, format string, args ...any) {
		reported = append(reported, k)
		msg := fmt.Sprintf(format, args...)
		if line := pos.line(k); line > 0 {
			msg += fmt.Sprintf(" (line %d)", line)
		}
		fe.Add(k.String(), "%s", msg)
	}

	undecoded := map[string]bool{}
	for _, k := range md.Undecoded() {
		undecoded[k.String()] = true
		if opaque(k) || within(k) {
			continue
		}
		add(k, "unknown key")
	}
	for _, k := range md.Keys() {
		if undecoded[k.String()] || opaque(k) || within(k) {
			continue
		}
		if want := lowerKey(k); want.String() != k.String() {
			add(k, "unknown key; keys are case-sensitive: did you mean %s?", want)
		}
	}
}

// opaque reports whether k lies inside a [plugins.<kind>.config] table.
func opaque(k toml.Key) bool {
	return len(k) > 3 && k[0] == "plugins" && k[2] == "config"
}

// lowerKey is k with the kernel's own key names lower-cased; plugin kinds
// (map keys) are left alone, Validate names an unknown kind.
func lowerKey(k toml.Key) toml.Key {
	out := make(toml.Key, len(k))
	for i, part := range k {
		if i == 1 && strings.EqualFold(k[0], "plugins") {
			out[i] = part
			continue
		}
		out[i] = strings.ToLower(part)
	}
	return out
}

func hasPrefix(k, prefix toml.Key) bool {
	if len(k) < len(prefix) {
		return false
	}
	for i := range prefix {
		if k[i] != prefix[i] {
			return false
		}
	}
	return true
}

// typeErrorRE matches the errors BurntSushi/toml returns as plain strings
// for a value of the wrong type: `toml: line 5 (last key "raft.x"): ...`.
var typeErrorRE = regexp.MustCompile(`^toml: line (\d+) \(last key "((?:[^"\\]|\\.)*)"\): (.*)$`)

// decodeError rewrites a BurntSushi/toml error so that it names the key and
// its line. A syntax error names the line and column, and the last key read
// before it (the parser knows no better).
func decodeError(md toml.MetaData, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		if md.Keys() == nil || pe.LastKey == "" {
			// The parser failed before any key was decoded: a syntax error.
			after := ""
			if pe.LastKey != "" {
				after = fmt.Sprintf(" (last key read: %s)", pe.LastKey)
			}
			return fmt.Errorf("toml syntax: line %d, column %d%s: %s", pe.Position.Line, pe.Position.Col, after, pe.Message)
		}
		// A value the decoder (or Duration, or Opaque) rejected.
		return sdk.FieldErrors{{
			Field:   pe.LastKey,
			Message: fmt.Sprintf("%s (line %d)", pe.Message, pe.Position.Line),
		}}
	}
	if m := typeErrorRE.FindStringSubmatch(err.Error()); m != nil {
		key, uerr := strconv.Unquote(`"` + m[2] + `"`)
		if uerr != nil {
			key = m[2]
		}
		return sdk.FieldErrors{{Field: key, Message: fmt.Sprintf("%s (line %s)", m[3], m[1])}}
	}
	return fmt.Errorf("toml: %w", err)
}

// positions finds where keys are set in a TOML document.
//
// BurntSushi/toml records each key's position but only reveals it in the
// ParseError of a value that fails to decode. So positions decodes the
// document into Primitives, walks them down to a key, and decodes that key
// into lineProbe, which always fails, to read the line from the error. It is
// only used to describe errors, so its cost does not matter.
type positions struct {
	md    toml.MetaData
	top   map[string]toml.Primitive
	keys  []toml.Key
	ready bool
	data  []byte
}

func newPositions(data []byte, keys []toml.Key) *positions {
	return &positions{data: data, keys: keys}
}

// line is the line where key is set, or 0 when it cannot be found (for
// example a key inside an array of tables).
func (p *positions) line(key toml.Key) int {
	if !p.ready {
		p.ready = true
		md, err := toml.Decode(string(p.data), &p.top)
		if err != nil {
			p.top = nil
		}
		p.md = md
	}
	prims := p.top
	for i, part := range key {
		prim, ok := prims[part]
		if !ok {
			return 0
		}
		if i == len(key)-1 {
			var pe toml.ParseError
			if err := p.md.PrimitiveDecode(prim, &lineProbe{}); errors.As(err, &pe) {
				return pe.Position.Line
			}
			return 0
		}
		var next map[string]toml.Primitive
		if err := p.md.PrimitiveDecode(prim, &next); err != nil {
			return 0
		}
		prims = next
	}
	return 0
}

// fieldLine is the line of a field named by Validate ("join.addrs[1]",
// "plugins.scheduler"): the line of that key, else of the first key set
// inside it (a table made only by dotted keys has no line of its own).
func (p *positions) fieldLine(field string) int {
	if i := strings.IndexByte(field, '['); i >= 0 {
		field = field[:i]
	}
	for _, k := range p.keys {
		if k.String() == field {
			return p.line(k)
		}
	}
	for _, k := range p.keys {
		if strings.HasPrefix(k.String(), field+".") {
			return p.line(k)
		}
	}
	return 0
}

// lineProbe fails to decode anything, which makes BurntSushi/toml report
// the position of the key being decoded.
type lineProbe struct{}

var errProbe = errors.New("probe")

func (*lineProbe) UnmarshalTOML(any) error { return errProbe }

var _ toml.Unmarshaler = (*Opaque)(nil)

// Opaque is a TOML table the kernel passes to a plugin without reading it:
// the [plugins.<kind>.config] table, re-encoded as TOML text (keys sorted).
// The plugin decodes it strictly, so its own unknown keys are errors too; its
// error messages name keys relative to the table, without line numbers of
// the original file. Empty when the table is absent or empty.
type Opaque []byte

// UnmarshalTOML keeps a decoded table as TOML text.
func (o *Opaque) UnmarshalTOML(v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("must be a table, got %s", tomlTypeName(v))
	}
	if len(m) == 0 {
		*o = nil
		return nil
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(m); err != nil {
		return fmt.Errorf("keep plugin config: %w", err)
	}
	*o = buf.Bytes()
	return nil
}

// tomlTypeName names the TOML type of a decoded value for a message.
func tomlTypeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "an array"
	}
	return "a date or time"
}
