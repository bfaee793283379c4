package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"unicode"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// outputFormat is the value of --format, which every command that prints
// something takes: one of the command's named formats ("table", "json",
// "pretty"), or a Go template, as docker's --format.
//
// A template runs once per object (per line of a listing), over the object
// as --format json prints it, decoded into maps: the field names are the
// proto names of the JSON output ({{.id}}, {{.spec.annotations.name}},
// {{json .spec}}), with unset scalars, lists and maps present as their zero
// value, so that only a misspelt name is an error. An unset message is
// null: {{with .update_status}}{{.state}}{{end}} tests it.
type outputFormat struct {
	// names are the named formats the command takes; "json" is always
	// one.
	names []string
	// name is the named format chosen; "" for a template, or for a
	// command whose default output is a message rather than a named format.
	name string
	tmpl *template.Template
}

// addOutputFlag adds --format to fs, defaulting to def ("" for a command
// whose default output is a message), which takes "json", the names, and Go
// templates.
func addOutputFlag(fs *pflag.FlagSet, f *outputFormat, def string, names ...string) {
	f.names = nil
	for _, n := range append(append([]string{def}, names...), "json") {
		if n != "" && !slices.Contains(f.names, n) {
			f.names = append(f.names, n)
		}
	}
	f.name = def
	usage := fmt.Sprintf("output format: %s, or a Go template over the JSON fields, e.g. '{{.id}}'", strings.Join(f.names, ", "))
	if def == "" {
		usage = "print json, or a Go template over the JSON fields, e.g. '{{.id}}', instead of a message"
	}
	fs.Var(f, "format", usage)
}

func (f *outputFormat) String() string {
	if f.tmpl != nil {
		return f.tmpl.Root.String()
	}
	return f.name
}

func (f *outputFormat) Type() string { return "string" }

func (f *outputFormat) Set(s string) error {
	if slices.Contains(f.names, s) {
		f.name, f.tmpl = s, nil
		return nil
	}
	if !strings.Contains(s, "{{") {
		return fmt.Errorf("want one of %s, or a Go template such as '{{.id}}'", strings.Join(f.names, ", "))
	}
	if strings.HasPrefix(s, "table ") {
		return errors.New(`"table TEMPLATE" is not supported: give the template alone, with \t between columns`)
	}
	// As docker does, \t and \n written out in a shell's quotes are a tab
	// and a newline.
	s = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(s)
	t, err := template.New("format").Funcs(templateFuncs).Option("missingkey=error").Parse(s)
	if err != nil {
		return err
	}
	f.name, f.tmpl = "", t
	return nil
}

// is reports whether the named format name was chosen.
func (f *outputFormat) is(name string) bool { return f.tmpl == nil && f.name == name }

// structured reports whether the output is JSON or a template rather than
// a table or a message: progress then goes to stderr, leaving stdout to
// the data.
func (f *outputFormat) structured() bool { return f.tmpl != nil || f.name == "json" }

// writeList prints items (proto messages, or values encoding/json
// encodes) as a JSON array, or the template once per item.
func writeList[T any](w io.Writer, f *outputFormat, items []T) error {
	if f.tmpl == nil {
		var buf bytes.Buffer
		buf.WriteByte('[')
		for i, item := range items {
			if i > 0 {
				buf.WriteByte(',')
			}
			b, err := marshalJSON(item)
			if err != nil {
				return err
			}
			buf.Write(b)
		}
		buf.WriteByte(']')
		return writeIndented(w, buf.Bytes())
	}
	for _, item := range items {
		if err := f.execute(w, item); err != nil {
			return err
		}
	}
	return nil
}

// writeOne prints one item as a JSON object, or the template once.
func writeOne(w io.Writer, f *outputFormat, item any) error {
	if f.tmpl == nil {
		b, err := marshalJSON(item)
		if err != nil {
			return err
		}
		return writeIndented(w, b)
	}
	return f.execute(w, item)
}

// marshalJSON is item as compact JSON: protojson with the proto field names
// for messages, encoding/json for other values.
func marshalJSON(item any) ([]byte, error) {
	var (
		b   []byte
		err error
	)
	if m, ok := item.(proto.Message); ok {
		b, err = jsonOptions.Marshal(m)
	} else {
		b, err = json.Marshal(item)
	}
	if err != nil {
		return nil, fmt.Errorf("encode json: %w", err)
	}
	return b, nil
}

// templateJSON are the options of a template's data: the JSON output's
// names, with every unset field present (see outputFormat).
var templateJSON = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// templateData is item as a template sees it: its JSON decoded into maps.
func templateData(item any) (any, error) {
	var (
		b   []byte
		err error
	)
	m, isProto := item.(proto.Message)
	if isProto {
		b, err = templateJSON.Marshal(m)
	} else {
		b, err = json.Marshal(item)
	}
	if err != nil {
		return nil, fmt.Errorf("encode json: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var data any
	if err := dec.Decode(&data); err != nil {
		return nil, fmt.Errorf("decode json: %w", err)
	}
	if isProto {
		if obj, ok := data.(map[string]any); ok {
			addOneofs(obj, m.ProtoReflect().Descriptor())
		}
	}
	return data, nil
}

// addOneofs sets the unset members of oneofs to null, in obj and the
// messages within: protojson leaves them out even with EmitUnpopulated, and
// a template that asks for {{.spec.global}} of a replicated service should
// get nothing rather than an error.
func addOneofs(obj map[string]any, md protoreflect.MessageDescriptor) {
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		name := string(fd.Name())
		v, ok := obj[name]
		if !ok {
			if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
				obj[name] = nil
			}
			continue
		}
		if fd.Kind() != protoreflect.MessageKind && !fd.IsMap() {
			continue
		}
		sub := fd.Message()
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() != protoreflect.MessageKind {
				continue
			}
			sub = fd.MapValue().Message()
			if m, ok := v.(map[string]any); ok {
				for _, e := range m {
					if em, ok := e.(map[string]any); ok {
						addOneofs(em, sub)
					}
				}
			}
		case fd.IsList():
			if l, ok := v.([]any); ok {
				for _, e := range l {
					if em, ok := e.(map[string]any); ok {
						addOneofs(em, sub)
					}
				}
			}
		default:
			if em, ok := v.(map[string]any); ok && !strings.HasPrefix(string(sub.FullName()), "google.protobuf.") {
				addOneofs(em, sub)
			}
		}
	}
}

// execute runs the template over item, then ends the line.
func (f *outputFormat) execute(w io.Writer, item any) error {
	data, err := templateData(item)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := f.tmpl.Execute(&buf, data); err != nil {
		if keys := fieldsAt(data, err); keys != nil {
			return fmt.Errorf("--format: %w (the fields there, as --format json names them: %s)", err, strings.Join(keys, ", "))
		}
		return fmt.Errorf("--format: %w", err)
	}
	buf.WriteByte('\n')
	_, err = w.Write(buf.Bytes())
	return err
}

// missingField finds, in a template's error, the field chain and the key
// that was not there: `at <.spec.mode.replicated>: map has no entry for
// key "mode"`.
var missingField = regexp.MustCompile(`at <(\.[^>]*)>: map has no entry for key "([^"]*)"`)

// fieldsAt returns the names of the fields beside the one a template's
// error says is missing, for a misspelt field: the keys of the map it was
// looked up in. It returns nil when the error is of another kind.
func fieldsAt(data any, err error) []string {
	m := missingField.FindStringSubmatch(err.Error())
	if m == nil {
		return nil
	}
	cur := data
	for _, name := range strings.Split(strings.TrimPrefix(m[1], "."), ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if name == m[2] {
			return slices.Sorted(maps.Keys(obj))
		}
		cur = obj[name]
	}
	return nil
}

// templateFuncs are docker's template functions.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return "", err
		}
		return strings.TrimSuffix(buf.String(), "\n"), nil
	},
	"join": func(v any, sep string) (string, error) {
		rv := reflect.ValueOf(v)
		if rv.Kind() != reflect.Slice {
			return "", fmt.Errorf("join: want a list, got %T", v)
		}
		parts := make([]string, rv.Len())
		for i := range parts {
			parts[i] = fmt.Sprint(rv.Index(i).Interface())
		}
		return strings.Join(parts, sep), nil
	},
	"split": strings.Split,
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"title": func(s string) string {
		if s == "" {
			return s
		}
		r := []rune(s)
		r[0] = unicode.ToUpper(r[0])
		return string(r)
	},
	"truncate": func(s string, n int) string {
		if r := []rune(s); len(r) > n {
			return string(r[:n])
		}
		return s
	},
	"pad": func(s string, before, after int) string {
		return strings.Repeat(" ", before) + s + strings.Repeat(" ", after)
	},
}
