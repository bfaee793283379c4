package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
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
// line, the column and the last key the parser read, and is the only error
// reported (the parser cannot go on).
//
// Every other problem is reported at once, in one sdk.FieldErrors with one
// entry per bad key or field, in the order of the file: BurntSushi/toml
// stops at the first value it cannot decode, so Parse decodes the document
// key by key (see decoder) and then validates what did decode, naming the
// line where each field is set when the file sets it. A field whose value
// did not decode keeps its default, and the checks of Validate on it (or
// against it) are left out: they would only describe the default.
func Parse(data []byte) (Config, error) {
	c := Default()
	var top map[string]toml.Primitive
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&top)
	if err != nil {
		return Config{}, syntaxError(err)
	}
	d := &decoder{md: md, pos: newPositions(data, md.Keys())}
	d.fields(nil, top, reflect.ValueOf(&c).Elem())
	if err := c.Validate(); err != nil {
		var vfe sdk.FieldErrors
		if !errors.As(err, &vfe) {
			return Config{}, err
		}
		for _, f := range vfe {
			if !d.involvesBad(f) {
				d.add(f.Field, d.pos.fieldLine(f.Field), f.Message)
			}
		}
	}
	var fe sdk.FieldErrors
	if !md.IsDefined("version") {
		fe.Add("version", "missing; this shoal reads files that start with version = %d", Version)
	}
	fe = append(fe, d.errs()...)
	if err := fe.Err(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// syntaxError describes an error of the TOML parser: the line and column,
// and the last key read before it (the parser knows no better).
func syntaxError(err error) error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return fmt.Errorf("toml: %w", err)
	}
	after := ""
	if pe.LastKey != "" {
		after = fmt.Sprintf(" (last key read: %s)", pe.LastKey)
	}
	return fmt.Errorf("toml syntax: line %d, column %d%s: %s", pe.Position.Line, pe.Position.Col, after, pe.Message)
}

// decoder decodes a parsed document into Config one key at a time, so that
// one bad key does not hide the others: tables (structs, and the plugins
// map) are walked key by key, and each leaf value is decoded on its own into
// a fresh value, assigned only when it decodes. Every problem is recorded
// with its key and line.
type decoder struct {
	md  toml.MetaData
	pos *positions
	// found are the problems, in no particular order (see errs).
	found []problem
	// bad are the keys whose value did not decode (not unknown keys).
	bad []toml.Key
	// reported are the keys reported unknown: the keys inside them are not
	// reported again.
	reported []toml.Key
}

type problem struct {
	line int
	err  sdk.FieldError
}

// add records a problem with field, naming its line when it is known.
func (d *decoder) add(field string, line int, msg string) {
	if line > 0 {
		msg += fmt.Sprintf(" (line %d)", line)
	}
	d.found = append(d.found, problem{line: line, err: sdk.FieldError{Field: field, Message: msg}})
}

// errs returns the problems in the order of the file (those without a line
// last), then by field; a field's own problems keep the order they were
// found in.
func (d *decoder) errs() sdk.FieldErrors {
	sort.SliceStable(d.found, func(i, j int) bool {
		a, b := d.found[i], d.found[j]
		if (a.line == 0) != (b.line == 0) {
			return b.line == 0
		}
		if a.line != b.line {
			return a.line < b.line
		}
		return a.err.Field < b.err.Field
	})
	fe := make(sdk.FieldErrors, 0, len(d.found))
	for _, p := range d.found {
		fe = append(fe, p.err)
	}
	return fe
}

var (
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	tomlUnmarshaler = reflect.TypeFor[toml.Unmarshaler]()
)

// isTable reports whether values of t are decoded key by key: structs
// other than those that decode themselves (Duration, Opaque), and maps of
// them (the plugins).
func isTable(t reflect.Type) bool {
	decodesItself := func(t reflect.Type) bool {
		p := reflect.PointerTo(t)
		return p.Implements(textUnmarshaler) || p.Implements(tomlUnmarshaler)
	}
	switch t.Kind() {
	case reflect.Struct:
		return !decodesItself(t)
	case reflect.Map:
		return t.Key().Kind() == reflect.String && t.Elem().Kind() == reflect.Struct && !decodesItself(t.Elem())
	}
	return false
}

// fields decodes the keys of table into the struct rv, the table at key.
func (d *decoder) fields(key toml.Key, table map[string]toml.Primitive, rv reflect.Value) {
	byName := map[string]int{}
	t := rv.Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		byName[name] = i
	}
	for _, name := range slices.Sorted(maps.Keys(table)) {
		k := append(slices.Clip(key), name)
		i, ok := byName[name]
		if !ok {
			d.unknown(k, byName)
			continue
		}
		d.value(k, table[name], rv.Field(i))
	}
}

// value decodes the value at key into rv.
func (d *decoder) value(key toml.Key, prim toml.Primitive, rv reflect.Value) {
	if !isTable(rv.Type()) {
		v := reflect.New(rv.Type())
		if err := d.md.PrimitiveDecode(prim, v.Interface()); err != nil {
			d.bad = append(d.bad, key)
			msg, line := decodeMessage(err)
			if line == 0 {
				line = d.pos.keyLine(key)
			}
			d.add(key.String(), line, msg)
			return
		}
		rv.Set(v.Elem())
		return
	}
	var raw any
	if err := d.md.PrimitiveDecode(prim, &raw); err != nil {
		// Decoding into an interface takes anything; this is not expected.
		d.bad = append(d.bad, key)
		d.add(key.String(), d.pos.keyLine(key), err.Error())
		return
	}
	if _, ok := raw.(map[string]any); !ok {
		d.bad = append(d.bad, key)
		d.add(key.String(), d.pos.keyLine(key), "type mismatch: want a table, got "+tomlTypeName(raw))
		return
	}
	var table map[string]toml.Primitive
	if err := d.md.PrimitiveDecode(prim, &table); err != nil {
		d.bad = append(d.bad, key)
		d.add(key.String(), d.pos.keyLine(key), err.Error())
		return
	}
	if rv.Kind() == reflect.Struct {
		d.fields(key, table, rv)
		return
	}
	// A map of tables: [plugins.<kind>]. Validate checks the kinds.
	if rv.IsNil() {
		rv.Set(reflect.MakeMap(rv.Type()))
	}
	for _, name := range slices.Sorted(maps.Keys(table)) {
		mk := reflect.ValueOf(name).Convert(rv.Type().Key())
		elem := reflect.New(rv.Type().Elem()).Elem()
		if cur := rv.MapIndex(mk); cur.IsValid() {
			elem.Set(cur)
		}
		d.value(append(slices.Clip(key), name), table[name], elem)
		rv.SetMapIndex(mk, elem)
	}
}

// unknown records key, which names no field of its table (byName). The keys
// the file sets at or under it are reported, each once, as
// BurntSushi/toml lists them: an unknown table is one error, and an unknown
// dotted key is named in full ("node.x.y").
func (d *decoder) unknown(key toml.Key, byName map[string]int) {
	msg := "unknown key"
	name := key[len(key)-1]
	var fix string
	for field := range byName {
		if strings.EqualFold(field, name) {
			fix = field
		}
	}
	hint := func(k toml.Key) string {
		if fix == "" {
			return msg
		}
		want := slices.Clone(k)
		want[len(key)-1] = fix
		return msg + "; keys are case-sensitive: did you mean " + want.String() + "?"
	}
	within := func(k toml.Key) bool {
		for _, r := range d.reported {
			if hasPrefix(k, r) {
				return true
			}
		}
		return false
	}
	found := false
	for _, k := range d.md.Keys() {
		if !hasPrefix(k, key) || within(k) {
			continue
		}
		found = true
		d.reported = append(d.reported, k)
		d.add(k.String(), d.pos.line(k), hint(k))
	}
	if !found && !within(key) {
		d.reported = append(d.reported, key)
		d.add(key.String(), d.pos.keyLine(key), hint(key))
	}
}

// involvesBad reports whether a Validate error is about a key whose value
// did not decode, or compares with one: the field holds its default, and
// the error would describe that default, not the file.
func (d *decoder) involvesBad(f sdk.FieldError) bool {
	for _, k := range d.bad {
		b := k.String()
		if f.Field == b || strings.HasPrefix(f.Field, b+".") || strings.HasPrefix(f.Field, b+"[") || mentions(f.Message, b) {
			return true
		}
	}
	return false
}

// mentions reports whether msg names the key k, or a key inside it:
// "raft.heartbeat_timeout" is named by "at least raft.heartbeat_timeout
// (300ms)", not by "raft.heartbeat_timeout_x"; a top-level table "raft" only
// by a key inside it ("raft.x"), so that a word of a message is not taken
// for it.
func mentions(msg, k string) bool {
	for i := 0; ; {
		j := strings.Index(msg[i:], k)
		if j < 0 {
			return false
		}
		at, end := i+j, i+j+len(k)
		left := at == 0 || !isKeyChar(msg[at-1]) && msg[at-1] != '.'
		under := end+1 < len(msg) && msg[end] == '.' && isKeyChar(msg[end+1])
		whole := strings.Contains(k, ".") && (end == len(msg) || !isKeyChar(msg[end]))
		if left && (under || whole) {
			return true
		}
		i = at + 1
	}
}

// isKeyChar reports whether c may be part of a bare TOML key.
func isKeyChar(c byte) bool {
	return c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// typeErrorRE matches the errors BurntSushi/toml returns as plain strings
// for a value of the wrong type: `toml: line 5 (last key "raft.x"): ...`,
// or without the line when it does not know it.
var typeErrorRE = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "(?:[^"\\]|\\.)*"\): (.*)$`)

// decodeMessage is what an error of BurntSushi/toml decoding one value says,
// without the library's prefix, and the line it names (0 if none).
func decodeMessage(err error) (string, int) {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return pe.Message, pe.Position.Line
	}
	if m := typeErrorRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return m[2], line
	}
	return strings.TrimPrefix(err.Error(), "toml: "), 0
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

// keyLine is the line of key, else of the first key set inside it (a table
// made only by dotted keys has no line of its own), or 0.
func (p *positions) keyLine(key toml.Key) int {
	if line := p.line(key); line > 0 {
		return line
	}
	for _, k := range p.keys {
		if hasPrefix(k, key) {
			if line := p.line(k); line > 0 {
				return line
			}
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

// hasPrefix reports whether key k is prefix or lies inside it.
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
