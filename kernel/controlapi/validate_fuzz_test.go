package controlapi

import (
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
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

// FuzzParseConstraint checks that parsing never panics, that what parses
// prints back to an expression that parses the same, and that ValidateConstraint
// accepts nothing ParseConstraint refuses.
func FuzzParseConstraint(f *testing.F) {
	for _, s := range []string{"node.role==manager", " node.labels.rack != a ", "k!==v", "k==a==b", "==", "", "node.labels.==x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		c, err := ParseConstraint(expr)
		verr := ValidateConstraint(expr)
		if err != nil {
			if verr == nil {
				t.Fatalf("ValidateConstraint(%q) = nil, but ParseConstraint failed: %v", expr, err)
			}
			return
		}
		if c.Op != OpEqual && c.Op != OpNotEqual {
			t.Fatalf("ParseConstraint(%q).Op = %q, want == or !=", expr, c.Op)
		}
		again, err := ParseConstraint(c.String())
		if err != nil || again != c {
			t.Fatalf("ParseConstraint(%q) = %+v, %v; want %+v", c.String(), again, err, c)
		}
	})
}
