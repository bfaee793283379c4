package controlapi

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/shoalhq/shoal/sdk"
)

// Invalid UTF-8 in a request.
//
// Protobuf requires the string fields of proto3 messages to be UTF-8, and
// the decoder refuses a request that breaks the rule. But grpc-go decodes a
// request before any interceptor or handler sees it, and wraps every decoding
// error as codes.Internal ("grpc: failed to unmarshal the received
// message"): a label with a stray byte would read as a bug of the server,
// naming no field. So the control API's servers decode with utf8Codec: on
// a decoding error it walks the request's wire bytes along its descriptor
// (protowire) to find the string fields with invalid UTF-8. When there are
// some, it records them against the message (emptied, so that nothing
// half-decoded can be served) and reports success to grpc; the interceptors
// that come with it take the record and answer InvalidArgument naming every
// such field, before anything else runs. Any other decoding error is
// returned unchanged, and so is every encoding.

// ServerOptions returns the options of a gRPC server that serves the
// control API, followed by opts: a codec and interceptors that answer a
// request with invalid UTF-8 in a string field with InvalidArgument naming
// the field, where grpc-go would answer Internal. They change nothing else,
// for any service of the server.
//
// The interceptors come first, so they run before those in opts: a request
// that grpc-go could not decode has always been refused before interceptors
// (authorization included) ran, and each record must be taken as soon as it
// is made.
func ServerOptions(opts ...grpc.ServerOption) []grpc.ServerOption {
	c := newUTF8Codec()
	return append([]grpc.ServerOption{
		grpc.ForceServerCodecV2(c),
		grpc.ChainUnaryInterceptor(c.unaryInterceptor),
		grpc.ChainStreamInterceptor(c.streamInterceptor),
	}, opts...)
}

// utf8Codec is grpc-go's proto codec, except that a request with invalid
// UTF-8 decodes "successfully" into an empty message, with the fields to
// blame recorded for the interceptors.
type utf8Codec struct {
	proto encoding.CodecV2

	mu  sync.Mutex
	bad map[any]sdk.FieldErrors // by message (a pointer); guarded by mu
	// n is len(bad), so that the interceptors (which see every request of
	// the server) take no lock while nothing is recorded, the usual case.
	n atomic.Int64
}

func newUTF8Codec() *utf8Codec {
	return &utf8Codec{proto: encoding.GetCodecV2("proto"), bad: make(map[any]sdk.FieldErrors)}
}

// Name is the proto codec's, whose wire format utf8Codec speaks.
func (c *utf8Codec) Name() string { return c.proto.Name() }

func (c *utf8Codec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c *utf8Codec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.proto.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return err
	}
	// Only a failed decoding pays for the walk.
	fe := invalidUTF8(data.Materialize(), m.ProtoReflect().Descriptor())
	if fe == nil {
		return err
	}
	proto.Reset(m)
	c.mu.Lock()
	c.bad[v] = fe
	c.n.Store(int64(len(c.bad)))
	c.mu.Unlock()
	return nil
}

// take returns, and forgets, what Unmarshal recorded against m: an
// InvalidArgument status naming each field with invalid UTF-8, or nil.
func (c *utf8Codec) take(m any) error {
	if c.n.Load() == 0 {
		return nil
	}
	c.mu.Lock()
	fe, ok := c.bad[m]
	delete(c.bad, m)
	c.n.Store(int64(len(c.bad)))
	c.mu.Unlock()
	if !ok {
		return nil
	}
	return sdk.ToGRPC(fe)
}

func (c *utf8Codec) unaryInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := c.take(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (c *utf8Codec) streamInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &utf8Stream{ServerStream: ss, codec: c})
}

// utf8Stream refuses each message of a stream that Unmarshal recorded.
type utf8Stream struct {
	grpc.ServerStream
	codec *utf8Codec
}

func (s *utf8Stream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.codec.take(m)
}

// recursionLimit is the decoder's own (proto.UnmarshalOptions): a message
// nested deeper fails to decode for that reason, not for its strings.
const recursionLimit = 10000

// invalidUTF8 returns the string fields of the message md encoded in b whose
// value is not UTF-8 where the decoder requires it, at most maxFieldErrors of
// them (and how many more), with paths such as
// `spec.annotations.labels["team"]` or "spec.task.container.env[2]". It
// returns nil when there is none, or when b is not well-formed wire data
// before one is found.
func invalidUTF8(b []byte, md protoreflect.MessageDescriptor) sdk.FieldErrors {
	var w utf8Walk
	w.message(b, md, "", 0)
	if w.more > 0 {
		w.fe.Add("request", "%d more fields with invalid UTF-8 not shown", w.more)
	}
	if len(w.fe) == 0 {
		return nil
	}
	return w.fe
}

type utf8Walk struct {
	fe   sdk.FieldErrors
	more int
}

func (w *utf8Walk) add(field, format string, args ...any) {
	if len(w.fe) < maxFieldErrors {
		w.fe.Add(field, format, args...)
	} else {
		w.more++
	}
}

// message walks the fields of one message. It returns false when b is not
// well-formed.
func (w *utf8Walk) message(b []byte, md protoreflect.MessageDescriptor, path string, depth int) bool {
	if depth > recursionLimit {
		return true
	}
	var index map[protowire.Number]int // occurrences so far of each list
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if fd == nil || typ != protowire.BytesType ||
			(fd.Kind() != protoreflect.StringKind && fd.Kind() != protoreflect.MessageKind) {
			// Unknown fields, other kinds and (as the decoder does)
			// fields of the wrong wire type carry no checked string.
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return false
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		f := fieldPath(path, fd)
		if fd.IsList() {
			if index == nil {
				index = make(map[protowire.Number]int)
			}
			f = fmt.Sprintf("%s[%d]", f, index[num])
			index[num]++
		}
		switch {
		case fd.IsMap():
			if !w.mapEntry(v, fd, f, depth+1) {
				return false
			}
		case fd.Kind() == protoreflect.MessageKind:
			if !w.message(v, fd.Message(), f, depth+1) {
				return false
			}
		case !utf8.Valid(v) && enforcesUTF8(fd):
			w.add(f, "must be valid UTF-8, got %s", quote(string(v)))
		}
	}
	return true
}

// mapEntry walks one entry of the map fd: the key names it in the path, as
// in `labels["team"]`. The decoder checks every occurrence of the key and
// the value (the last wins), and so does mapEntry.
func (w *utf8Walk) mapEntry(b []byte, fd protoreflect.FieldDescriptor, path string, depth int) bool {
	kd, vd := fd.MapKey(), fd.MapValue()
	var (
		values [][]byte // every value
		key    []byte   // the last key, with its tag
		keyOK  = true
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return false
		}
		switch {
		case num == kd.Number() && kd.Kind() != protoreflect.StringKind:
			key = b[:n+m]
		case num == kd.Number() && typ == protowire.BytesType:
			key = b[:n+m]
			s, _ := protowire.ConsumeBytes(b[n:])
			keyOK = keyOK && (utf8.Valid(s) || !enforcesUTF8(kd))
		case num == vd.Number() && typ == protowire.BytesType:
			v, _ := protowire.ConsumeBytes(b[n:])
			values = append(values, v)
		}
		b = b[n+m:]
	}
	var name string
	if kd.Kind() == protoreflect.StringKind {
		_, _, n := protowire.ConsumeTag(key)
		s, _ := protowire.ConsumeBytes(key[max(n, 0):])
		name = quote(string(s))
	} else {
		// An integer or bool key: the decoder reads it for us.
		entry := dynamicpb.NewMessage(fd.Message())
		if err := proto.Unmarshal(key, entry); err == nil {
			name = fmt.Sprint(entry.Get(kd).Interface())
		} else {
			name = "?"
		}
	}
	f := path + "[" + name + "]"
	if !keyOK {
		w.add(f, "key must be valid UTF-8")
	}
	for _, v := range values {
		switch {
		case vd.Kind() == protoreflect.MessageKind:
			if !w.message(v, vd.Message(), f, depth) {
				return false
			}
		case vd.Kind() == protoreflect.StringKind && !utf8.Valid(v) && enforcesUTF8(vd):
			w.add(f, "value must be valid UTF-8, got %s", quote(string(v)))
		}
	}
	return true
}

// fieldPath appends fd's name to path, after the name of its oneof as the
// validation names it ("spec.mode.replicated").
func fieldPath(path string, fd protoreflect.FieldDescriptor) string {
	var b strings.Builder
	b.WriteString(path)
	if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(string(od.Name()))
	}
	if b.Len() > 0 {
		b.WriteByte('.')
	}
	b.WriteString(string(fd.Name()))
	return b.String()
}

// enforcesUTF8 reports whether the decoder requires fd to be UTF-8: in
// proto3, and in editions unless a feature says otherwise (the rule of
// protobuf-go's internal/strs.EnforceUTF8).
func enforcesUTF8(fd protoreflect.FieldDescriptor) bool {
	if fd.Syntax() == protoreflect.Editions {
		if e, ok := fd.(interface{ EnforceUTF8() bool }); ok {
			return e.EnforceUTF8()
		}
	}
	return fd.Syntax() == protoreflect.Proto3
}
