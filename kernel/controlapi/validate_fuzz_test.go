package controlapi

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	"github.com/shoalhq/shoal/sdk/scheduler"
)

// FuzzValidateServiceSpec feeds arbitrary wire bytes through the path a
// CreateService request takes: defaults, then validation. Neither may panic,
// defaults must be idempotent, and validation must be deterministic.
func FuzzValidateServiceSpec(f *testing.F) {
	seeds := []*objectv1.ServiceSpec{
		{},
		validServiceSpec(),
		{Annotations: &objectv1.Annotations{Name: "web"}, Task: &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "nginx"}}},
		{Mode: &objectv1.ServiceSpec_Global{Global: &objectv1.GlobalService{}}},
	}
	bad := validServiceSpec()
	bad.Annotations.Labels[""] = "x"
	bad.Task.Container.Env = []string{"x", "=y"}
	bad.Endpoint.Ports[1].Protocol = "tcp"
	seeds = append(seeds, bad)
	over := validServiceSpec()
	over.Annotations.Labels = labelsOf(maxLabels + 1)
	over.Task.Container.Env = slices.Repeat([]string{"A=1"}, maxEnv+1)
	over.Task.Container.Dir = "/" + strings.Repeat("d", maxPathLen)
	seeds = append(seeds, over)
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		spec := &objectv1.ServiceSpec{}
		if err := proto.Unmarshal(b, spec); err != nil {
			t.Skip()
		}
		ApplyServiceDefaults(spec)
		once := proto.Clone(spec).(*objectv1.ServiceSpec)
		ApplyServiceDefaults(spec)
		if !proto.Equal(once, spec) {
			t.Fatalf("ApplyServiceDefaults is not idempotent: %v, then %v", once, spec)
		}
		err1 := ValidateServiceSpec(spec)
		err2 := ValidateServiceSpec(spec)
		if !reflect.DeepEqual(err1, err2) {
			t.Fatalf("ValidateServiceSpec = %v, then %v", err1, err2)
		}
		if !proto.Equal(once, spec) {
			t.Fatalf("ValidateServiceSpec changed the spec: %v, then %v", once, spec)
		}
	})
}

// FuzzValidateConstraint checks that validation never panics and accepts
// nothing the schedulers' parser refuses.
func FuzzValidateConstraint(f *testing.F) {
	for _, s := range []string{"node.role==manager", " node.labels.rack != a ", "k!==v", "k==a==b", "==", "", "node.labels.==x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		if ValidateConstraint(expr) != nil {
			return
		}
		if _, err := scheduler.ParseConstraint(expr); err != nil {
			t.Fatalf("ValidateConstraint(%q) = nil, but scheduler.ParseConstraint refuses it: %v", expr, err)
		}
	})
}

// FuzzInvalidUTF8 feeds arbitrary wire bytes, as a CreateServiceRequest, to
// the walk utf8Codec makes on a decoding error. It must not panic; it must
// blame no field of a request that decodes (a valid request is never
// refused); and when the decoder refuses a request for invalid UTF-8, it
// must name a field (or the request would be answered Internal).
func FuzzInvalidUTF8(f *testing.F) {
	spec := validServiceSpec()
	spec.Annotations.Labels["k"] = badMark
	spec.Task.Container.Env = []string{"A=" + badMark}
	spec.Task.Networks = []*objectv1.NetworkAttachmentConfig{{Target: "front", Aliases: []string{badMark}}}
	for _, m := range []proto.Message{
		&controlv1.CreateServiceRequest{},
		&controlv1.CreateServiceRequest{Spec: validServiceSpec()},
		&controlv1.CreateServiceRequest{Spec: spec},
	} {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add([]byte(strings.ReplaceAll(string(b), badMark, badBytes)))
	}
	md := (&controlv1.CreateServiceRequest{}).ProtoReflect().Descriptor()
	f.Fuzz(func(t *testing.T, b []byte) {
		fe := invalidUTF8(b, md)
		err := proto.Unmarshal(b, &controlv1.CreateServiceRequest{})
		if err == nil && fe != nil {
			t.Fatalf("invalidUTF8 = %v for a request that decodes", fe)
		}
		if err != nil && strings.Contains(err.Error(), "invalid UTF-8") && fe == nil {
			t.Fatalf("invalidUTF8 = nil, but the decoder says %v", err)
		}
		if len(fe) > maxFieldErrors+1 {
			t.Fatalf("invalidUTF8 returned %d errors, more than %d", len(fe), maxFieldErrors+1)
		}
	})
}
