package controlapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// badMark in a string of a message is replaced by badBytes in its wire form
// by corrupt: the same length, so every length prefix stays right. Protobuf
// would refuse to marshal invalid UTF-8 itself.
const (
	badMark  = "~~"
	badBytes = "\xc3\x28" // a two-byte sequence with a bad second byte
)

func corrupt(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(badMark)) {
		t.Fatalf("%v has no %q to corrupt", m, badMark)
	}
	return bytes.ReplaceAll(b, []byte(badMark), []byte(badBytes))
}

// errorLines returns "field: message" for each error of fe.
func errorLines(fe sdk.FieldErrors) []string {
	var out []string
	for _, f := range fe {
		out = append(out, f.Error())
	}
	return out
}

func TestInvalidUTF8Fields(t *testing.T) {
	spec := func(mutate func(*objectv1.ServiceSpec)) *objectv1.ServiceSpec {
		s := validServiceSpec()
		mutate(s)
		return s
	}
	tests := []struct {
		name string
		msg  proto.Message
		want []string
	}{
		{"label value", &controlv1.CreateServiceRequest{Spec: spec(func(s *objectv1.ServiceSpec) {
			s.Annotations.Labels = map[string]string{"team": "a" + badMark}
		})}, []string{`spec.annotations.labels["team"]: value must be valid UTF-8, got "a\xc3("`}},
		{"label key", &controlv1.CreateServiceRequest{Spec: spec(func(s *objectv1.ServiceSpec) {
			s.Annotations.Labels = map[string]string{"k" + badMark: "v"}
		})}, []string{`spec.annotations.labels["k\xc3("]: key must be valid UTF-8`}},
		{"name", &controlv1.UpdateServiceRequest{Ref: "web", Spec: spec(func(s *objectv1.ServiceSpec) { s.Annotations.Name = badMark })},
			[]string{`spec.annotations.name: must be valid UTF-8, got "\xc3("`}},
		{"env entry", &controlv1.CreateServiceRequest{Spec: spec(func(s *objectv1.ServiceSpec) {
			s.Task.Container.Env = []string{"A=1", "B=2", "C=" + badMark}
		})}, []string{`spec.task.container.env[2]: must be valid UTF-8, got "C=\xc3("`}},
		{"mount and alias", &controlv1.CreateServiceRequest{Spec: spec(func(s *objectv1.ServiceSpec) {
			s.Task.Container.Mounts[1].Target = "/" + badMark
			s.Task.Networks = []*objectv1.NetworkAttachmentConfig{{Target: "front", Aliases: []string{"a", badMark}}}
		})}, []string{
			`spec.task.container.mounts[1].target: must be valid UTF-8, got "/\xc3("`,
			`spec.task.networks[0].aliases[1]: must be valid UTF-8, got "\xc3("`,
		}},
		{"every field, in wire order", &controlv1.UpdateNodeRequest{Ref: badMark, Spec: &objectv1.NodeSpec{
			Annotations: &objectv1.Annotations{Name: "n" + badMark, Labels: map[string]string{"rack": badMark}},
		}}, []string{
			`ref: must be valid UTF-8, got "\xc3("`,
			`spec.annotations.name: must be valid UTF-8, got "n\xc3("`,
			`spec.annotations.labels["rack"]: value must be valid UTF-8, got "\xc3("`,
		}},
		{"list filters", &controlv1.ListServicesRequest{Names: []string{"ok", badMark}, LabelSelector: map[string]string{badMark: "x"}},
			[]string{`names[1]: must be valid UTF-8, got "\xc3("`, `label_selector["\xc3("]: key must be valid UTF-8`}},
		{"network subnet", &controlv1.CreateNetworkRequest{Spec: &objectv1.NetworkSpec{Subnet: "10.0.0.0/8" + badMark}},
			[]string{`spec.subnet: must be valid UTF-8, got "10.0.0.0/8\xc3("`}},
		{"stream request", &controlv1.TaskLogsRequest{Service: badMark},
			[]string{`service: must be valid UTF-8, got "\xc3("`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := corrupt(t, tt.msg)
			if err := proto.Unmarshal(b, proto.Clone(tt.msg)); err == nil {
				t.Fatal("the corrupted message decodes: the test proves nothing")
			}
			got := errorLines(invalidUTF8(b, tt.msg.ProtoReflect().Descriptor()))
			if !slices.Equal(got, tt.want) {
				t.Errorf("invalidUTF8 =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestInvalidUTF8NotFound: what is not invalid UTF-8 in a checked string is
// not blamed on one, so its decoding error stands.
func TestInvalidUTF8NotFound(t *testing.T) {
	md := (&controlv1.CreateServiceRequest{}).ProtoReflect().Descriptor()
	valid, err := proto.Marshal(&controlv1.CreateServiceRequest{Spec: validServiceSpec()})
	if err != nil {
		t.Fatal(err)
	}
	unknown := protowire.AppendBytes(protowire.AppendTag(nil, 99, protowire.BytesType), []byte(badBytes))
	// The spec field sent as a varint: the decoder takes it for an unknown
	// field.
	wrongType := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 5)
	for name, b := range map[string][]byte{
		"valid":                 valid,
		"truncated":             valid[:len(valid)-3],
		"bad tag":               {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"unknown field":         unknown,
		"wrong wire type":       wrongType,
		"bad length of a field": {0x0a, 0x7f, 0x0a},
	} {
		if fe := invalidUTF8(b, md); fe != nil {
			t.Errorf("%s: invalidUTF8 = %v, want nil", name, fe)
		}
	}
}

// TestInvalidUTF8Capped: a request with a string per byte cannot make an
// unbounded reply.
func TestInvalidUTF8Capped(t *testing.T) {
	s := validServiceSpec()
	s.Task.Container.Env = slices.Repeat([]string{badMark}, maxFieldErrors+50)
	fe := invalidUTF8(corrupt(t, &controlv1.CreateServiceRequest{Spec: s}), (&controlv1.CreateServiceRequest{}).ProtoReflect().Descriptor())
	if len(fe) != maxFieldErrors+1 {
		t.Fatalf("invalidUTF8 returned %d errors, want %d", len(fe), maxFieldErrors+1)
	}
	if got, want := fe[len(fe)-1].Error(), "request: 50 more fields with invalid UTF-8 not shown"; got != want {
		t.Errorf("last error = %q, want %q", got, want)
	}
}

// testMessage builds message M of a test file in the given syntax, with
// the shapes the control API's messages lack: maps with integer keys and
// message values, and a oneof.
//
//	message M {
//	  string s = 1;
//	  map<int32, string> ids = 2;
//	  map<string, M> subs = 3;
//	  oneof choice { string one = 4; }
//	}
func testMessage(t *testing.T, syntax string) protoreflect.MessageDescriptor {
	t.Helper()
	pkg := "utf8test" + syntax
	field := func(name string, num int32, label descriptorpb.FieldDescriptorProto_Label, typ descriptorpb.FieldDescriptorProto_Type, typeName string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num), Label: label.Enum(), Type: typ.Enum()}
		if typeName != "" {
			f.TypeName = proto.String("." + pkg + "." + typeName)
		}
		return f
	}
	const (
		opt = descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
		rep = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
		str = descriptorpb.FieldDescriptorProto_TYPE_STRING
		i32 = descriptorpb.FieldDescriptorProto_TYPE_INT32
		msg = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	)
	entry := &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)}
	one := field("one", 4, opt, str, "")
	one.OneofIndex = proto.Int32(0)
	file := &descriptorpb.FileDescriptorProto{
		Name:    proto.String(pkg + ".proto"),
		Package: proto.String(pkg),
		Syntax:  proto.String(syntax),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("M"),
			Field: []*descriptorpb.FieldDescriptorProto{
				field("s", 1, opt, str, ""),
				field("ids", 2, rep, msg, "M.IdsEntry"),
				field("subs", 3, rep, msg, "M.SubsEntry"),
				one,
			},
			NestedType: []*descriptorpb.DescriptorProto{
				{Name: proto.String("IdsEntry"), Options: entry, Field: []*descriptorpb.FieldDescriptorProto{
					field("key", 1, opt, i32, ""), field("value", 2, opt, str, "")}},
				{Name: proto.String("SubsEntry"), Options: entry, Field: []*descriptorpb.FieldDescriptorProto{
					field("key", 1, opt, str, ""), field("value", 2, opt, msg, "M")}},
			},
			OneofDecl: []*descriptorpb.OneofDescriptorProto{{Name: proto.String("choice")}},
		}},
	}
	fd, err := protodesc.NewFile(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	return fd.Messages().ByName("M")
}

func TestInvalidUTF8Shapes(t *testing.T) {
	str := func(num protowire.Number, s string) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), []byte(s))
	}
	idsEntry := func(key int32, value string) []byte {
		e := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), uint64(key))
		return str(2, string(append(e, str(2, value)...)))
	}
	subsEntry := func(key string, value []byte) []byte {
		// The value first: a key may come after it.
		return str(3, string(append(str(2, string(value)), str(1, key)...)))
	}
	tests := []struct {
		name string
		b    []byte
		want []string
	}{
		{"string", str(1, badBytes), []string{`s: must be valid UTF-8, got "\xc3("`}},
		{"integer key", idsEntry(-7, badBytes), []string{`ids[-7]: value must be valid UTF-8, got "\xc3("`}},
		{"message value", subsEntry("a", str(1, "x"+badBytes)), []string{`subs["a"].s: must be valid UTF-8, got "x\xc3("`}},
		{"nested maps", subsEntry("a", subsEntry("b", idsEntry(3, badBytes))),
			[]string{`subs["a"].subs["b"].ids[3]: value must be valid UTF-8, got "\xc3("`}},
		{"oneof", str(4, badBytes), []string{`choice.one: must be valid UTF-8, got "\xc3("`}},
	}
	for _, syntax := range []string{"proto3", "proto2"} {
		md := testMessage(t, syntax)
		for _, tt := range tests {
			t.Run(syntax+"/"+tt.name, func(t *testing.T) {
				err := proto.Unmarshal(tt.b, dynamicpb.NewMessage(md))
				got := errorLines(invalidUTF8(tt.b, md))
				if syntax == "proto2" {
					// proto2 strings may hold any bytes: nothing to blame.
					if err != nil || got != nil {
						t.Errorf("proto2: decoding error %v, invalidUTF8 = %q; want neither", err, got)
					}
					return
				}
				if err == nil {
					t.Fatal("the message decodes: the test proves nothing")
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("invalidUTF8 = %q, want %q", got, tt.want)
				}
			})
		}
	}
}

// TestCodecRecordsOnce: a request with invalid UTF-8 decodes into an empty
// message, whose record the interceptors take once; other decoding errors
// are returned as they are.
func TestCodecRecordsOnce(t *testing.T) {
	c := newUTF8Codec()
	req := &controlv1.CreateServiceRequest{}
	bad := corrupt(t, &controlv1.CreateServiceRequest{Spec: &objectv1.ServiceSpec{Annotations: &objectv1.Annotations{Name: badMark}}})
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(bad)}, req); err != nil {
		t.Fatalf("Unmarshal(invalid UTF-8) = %v, want nil (recorded)", err)
	}
	if req.GetSpec() != nil {
		t.Errorf("the request holds %v, want it empty", req)
	}
	err := c.take(req)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "spec.annotations.name: must be valid UTF-8") {
		t.Errorf("take = %v, want InvalidArgument naming spec.annotations.name", err)
	}
	if err := c.take(req); err != nil {
		t.Errorf("take again = %v, want nil", err)
	}
	if n := c.n.Load(); n != 0 {
		t.Errorf("%d records left, want 0", n)
	}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(bad[:len(bad)-1])}, req); err == nil {
		t.Error("Unmarshal(truncated) = nil, want the decoding error")
	}
	if n := c.n.Load(); n != 0 {
		t.Errorf("a truncated request left %d records, want 0", n)
	}
}

// rawCodec lets a test client send any bytes: a []byte request goes as it
// is; replies decode as protobuf.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.([]byte); ok {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	b, err := proto.Marshal(v.(proto.Message))
	return mem.BufferSlice{mem.SliceBuffer(b)}, err
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}

// TestInvalidUTF8OverGRPC sends requests with invalid UTF-8 to a gRPC
// server built with ServerOptions that serves the control API and another
// service: each is refused with InvalidArgument naming the field, nothing is
// stored, and valid requests and other errors are served as before.
func TestInvalidUTF8OverGRPC(t *testing.T) {
	s, r := newTestServer(t)
	srv := grpc.NewServer(ServerOptions()...)
	controlv1.RegisterControlServer(srv, s)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///control",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx := t.Context()
	control := controlv1.NewControlClient(conn)

	// A valid request passes through the codec.
	if _, err := control.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: validServiceSpec()}); err != nil {
		t.Fatalf("CreateService(valid) = %v", err)
	}
	if resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Health.Check = %v, %v; want SERVING", resp, err)
	}

	labelled := validServiceSpec()
	labelled.Annotations.Name = "api"
	labelled.Annotations.Labels = map[string]string{"team": "a" + badMark}
	unary := []struct {
		name   string
		method string
		req    []byte
		code   codes.Code
		field  string // the one field named, for InvalidArgument
	}{
		{"create service, label value", controlv1.Control_CreateService_FullMethodName,
			corrupt(t, &controlv1.CreateServiceRequest{Spec: labelled}), codes.InvalidArgument, `spec.annotations.labels["team"]`},
		{"update service, env", controlv1.Control_UpdateService_FullMethodName,
			corrupt(t, &controlv1.UpdateServiceRequest{Ref: "web", Version: 1, Spec: withEnv(badMark)}), codes.InvalidArgument, "spec.task.container.env[0]"},
		{"create network, name", controlv1.Control_CreateNetwork_FullMethodName,
			corrupt(t, &controlv1.CreateNetworkRequest{Spec: networkSpec(badMark, "", 0)}), codes.InvalidArgument, "spec.annotations.name"},
		{"update node, label key", controlv1.Control_UpdateNode_FullMethodName,
			corrupt(t, &controlv1.UpdateNodeRequest{Ref: "n1", Version: 1, Spec: &objectv1.NodeSpec{Annotations: &objectv1.Annotations{Labels: map[string]string{badMark: ""}}}}),
			codes.InvalidArgument, `spec.annotations.labels["\xc3("]`},
		{"update cluster, label", controlv1.Control_UpdateCluster_FullMethodName,
			corrupt(t, &controlv1.UpdateClusterRequest{Version: 1, Spec: &objectv1.ClusterSpec{Annotations: &objectv1.Annotations{Labels: map[string]string{"a": badMark}}}}),
			codes.InvalidArgument, `spec.annotations.labels["a"]`},
		{"another service", healthpb.Health_Check_FullMethodName,
			corrupt(t, &healthpb.HealthCheckRequest{Service: badMark}), codes.InvalidArgument, "service"},
		// Other decoding errors are what they were.
		{"truncated", controlv1.Control_CreateService_FullMethodName,
			corrupt(t, &controlv1.CreateServiceRequest{Spec: labelled})[:20], codes.Internal, ""},
	}
	for _, tt := range unary {
		t.Run(tt.name, func(t *testing.T) {
			before := r.st.Snapshot()
			err := conn.Invoke(ctx, tt.method, tt.req, &controlv1.CreateServiceResponse{}, grpc.ForceCodecV2(rawCodec{}))
			checkRefused(t, err, tt.code, tt.field)
			if after := r.st.Snapshot(); !proto.Equal(before, after) {
				t.Errorf("the state changed: index %d, then %d", before.GetIndex(), after.GetIndex())
			}
		})
	}

	t.Run("server stream", func(t *testing.T) {
		desc := &grpc.StreamDesc{ServerStreams: true}
		stream, err := conn.NewStream(ctx, desc, controlv1.Control_TaskLogs_FullMethodName, grpc.ForceCodecV2(rawCodec{}))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.SendMsg(corrupt(t, &controlv1.TaskLogsRequest{Service: "web" + badMark})); err != nil {
			t.Fatal(err)
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		checkRefused(t, stream.RecvMsg(&controlv1.TaskLogsResponse{}), codes.InvalidArgument, "service")
	})

	// The valid service is all there is.
	list, err := control.ListServices(ctx, &controlv1.ListServicesRequest{})
	if err != nil || len(list.GetServices()) != 1 {
		t.Errorf("ListServices = %v, %v; want the one valid service", list.GetServices(), err)
	}
}

func withEnv(env ...string) *objectv1.ServiceSpec {
	s := validServiceSpec()
	s.Task.Container.Env = env
	return s
}

// checkRefused checks err's code and, for InvalidArgument, that it names
// exactly field, as a client sees it (sdk.FromGRPC).
func checkRefused(t *testing.T, err error, code codes.Code, field string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("error = %v, want code %v", err, code)
	}
	if code != codes.InvalidArgument {
		return
	}
	var fe sdk.FieldErrors
	if !errors.As(sdk.FromGRPC(err), &fe) || len(fe) != 1 || fe[0].Field != field {
		t.Fatalf("error = %v, want one field error naming %s", err, field)
	}
	if want := "must be valid UTF-8"; !strings.Contains(fe[0].Message, want) {
		t.Errorf("message %q does not say %q", fe[0].Message, want)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("%s: ", field)) {
		t.Errorf("status message %q does not name %s", err.Error(), field)
	}
}
