package scheduler_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
	"github.com/shoalhq/shoal/sdk/scheduler"
)

func TestParseConstraint(t *testing.T) {
	cases := []struct {
		expr    string
		want    string // String() of the result; "" when an error is wanted
		wantErr string // the whole message
	}{
		{expr: "node.id==abc", want: "node.id==abc"},
		{expr: "node.hostname!=h1", want: "node.hostname!=h1"},
		{expr: "node.role==worker", want: "node.role==worker"},
		{expr: "node.role!=manager", want: "node.role!=manager"},
		{expr: "node.platform.os==linux", want: "node.platform.os==linux"},
		{expr: "node.platform.arch==arm/v7", want: "node.platform.arch==arm/v7"},
		{expr: "node.labels.com.example/zone==eu", want: "node.labels.com.example/zone==eu"},
		{expr: "  node.labels.rack  !=  r1 ", want: "node.labels.rack!=r1"},
		{expr: "node.labels.rack==a b", want: "node.labels.rack==a b"},
		// The first operator splits: the key differs from "=v".
		{expr: "node.labels.k!==v", want: "node.labels.k!==v"},

		{expr: "node.hostname=h", wantErr: `invalid constraint "node.hostname=h": must be KEY==VALUE or KEY!=VALUE`},
		{expr: "", wantErr: `invalid constraint "": must be KEY==VALUE or KEY!=VALUE`},
		{expr: "==worker", wantErr: `invalid constraint "==worker": the key before == is missing`},
		{expr: " !=worker", wantErr: `invalid constraint " !=worker": the key before != is missing`},
		{expr: "node.role==", wantErr: `invalid constraint "node.role==": the value after == is missing`},
		{expr: "node.role!=  ", wantErr: `invalid constraint "node.role!=  ": the value after != is missing`},
		{expr: "node.labels.a==b==c", wantErr: `invalid constraint "node.labels.a==b==c": the value must not contain == or != (one operator per constraint)`},
		{expr: "node.labels.a==b!=c", wantErr: `invalid constraint "node.labels.a==b!=c": the value must not contain == or != (one operator per constraint)`},
		{expr: "node.labels.a b==c", wantErr: `invalid constraint "node.labels.a b==c": the key must not contain '=', '!', white space or control characters`},
		{expr: "node.labels.a! ==c", wantErr: `invalid constraint "node.labels.a! ==c": the key must not contain '=', '!', white space or control characters`},
		{expr: "k= ==v", wantErr: `invalid constraint "k= ==v": the key must not contain '=', '!', white space or control characters`},
		{expr: "node.labels.k==a\tb", wantErr: `invalid constraint "node.labels.k==a\tb": the value must not contain control characters`},
		{expr: "node.labels.k==a\x00", wantErr: `invalid constraint "node.labels.k==a\x00": the value must not contain control characters`},
		{expr: "node.name==a", wantErr: `invalid constraint "node.name==a": the key must be node.id, node.hostname, node.role, node.platform.os, node.platform.arch or node.labels.<label>`},
		{expr: "node.labels.==x", wantErr: `invalid constraint "node.labels.==x": the key must be node.id, node.hostname, node.role, node.platform.os, node.platform.arch or node.labels.<label>`},
		{expr: "node.labels==x", wantErr: `invalid constraint "node.labels==x": the key must be node.id, node.hostname, node.role, node.platform.os, node.platform.arch or node.labels.<label>`},
		{expr: "node.platform==linux", wantErr: `invalid constraint "node.platform==linux": the key must be node.id, node.hostname, node.role, node.platform.os, node.platform.arch or node.labels.<label>`},
		{expr: "NODE.ROLE==worker", wantErr: `invalid constraint "NODE.ROLE==worker": the key must be node.id, node.hostname, node.role, node.platform.os, node.platform.arch or node.labels.<label>`},
		{expr: "engine.labels.os==ubuntu", wantErr: `invalid constraint "engine.labels.os==ubuntu": the key must be node.id, node.hostname, node.role, node.platform.os, node.platform.arch or node.labels.<label> (shoal has no engine labels; label the node and use node.labels.<label>)`},
		{expr: "node.role==Manager", wantErr: `invalid constraint "node.role==Manager": node.role must be compared with worker or manager`},
		{expr: "node.role!=leader", wantErr: `invalid constraint "node.role!=leader": node.role must be compared with worker or manager`},
		// Messages quote at most 64 bytes of the expression.
		{expr: "node.labels.k==" + strings.Repeat("v", 100) + "==x", wantErr: `invalid constraint "node.labels.k==` + strings.Repeat("v", 49) + `"...: the value must not contain == or != (one operator per constraint)`},
	}
	for _, tc := range cases {
		c, err := scheduler.ParseConstraint(tc.expr)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("ParseConstraint(%q) = %v, %v; want error %q", tc.expr, c, err, tc.wantErr)
			}
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Errorf("ParseConstraint(%q) error %v is not of kind sdk.ErrInvalidArgument", tc.expr, err)
			}
			var se *scheduler.SyntaxError
			if !errors.As(err, &se) || se.Expr != tc.expr || se.What != "constraint" {
				t.Errorf("ParseConstraint(%q) error %#v, want a *SyntaxError for this constraint", tc.expr, err)
			}
			continue
		}
		if err != nil || c.String() != tc.want {
			t.Errorf("ParseConstraint(%q) = %q, %v; want %q", tc.expr, c.String(), err, tc.want)
			continue
		}
		again, err := scheduler.ParseConstraint(c.String())
		if err != nil || again != c {
			t.Errorf("ParseConstraint(%q) = %v, %v; want %v (what String returns reads back the same)", c.String(), again, err, c)
		}
	}
}

func TestConstraintParts(t *testing.T) {
	c, err := scheduler.ParseConstraint(" node.labels.rack != r1 ")
	if err != nil {
		t.Fatal(err)
	}
	label, ok := c.Attribute().Label()
	if got := fmt.Sprintf("%s|%s|%s|%s|%v", c.Attribute(), c.Op(), c.Value(), label, ok); got != "node.labels.rack|!=|r1|rack|true" {
		t.Errorf("parts of node.labels.rack!=r1 = %s, want node.labels.rack|!=|r1|rack|true", got)
	}
	var zero scheduler.Constraint
	if n := testNode(); zero.Match(n) || zero.Explain(n) == "" {
		t.Errorf("the zero Constraint matches %v, explains %q; want no match and a reason", zero.Match(n), zero.Explain(n))
	}
}

func TestParseAttribute(t *testing.T) {
	for _, key := range []string{"node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch", "node.labels.rack"} {
		a, err := scheduler.ParseAttribute(key)
		if err != nil || a.String() != key {
			t.Errorf("ParseAttribute(%q) = %q, %v; want %q", key, a, err, key)
		}
	}
	for _, key := range []string{"", "rack", "node.labels.", "node.labels", "Node.ID", " node.id", "engine.labels.x"} {
		a, err := scheduler.ParseAttribute(key)
		var se *scheduler.SyntaxError
		if !errors.As(err, &se) || se.What != "node attribute" || !errors.Is(err, sdk.ErrInvalidArgument) ||
			!strings.HasPrefix(se.Reason, "must be node.id, node.hostname, node.role, node.platform.os, node.platform.arch or node.labels.<label>") {
			t.Errorf("ParseAttribute(%q) = %q, %v; want a *SyntaxError listing the keys", key, a, err)
		}
	}
}

// testNode is a manager on linux/arm64 with host name Web-1.example.com and
// labels rack=r1, empty="".
func testNode() *schedulerv1.NodeInfo {
	return &schedulerv1.NodeInfo{
		Id:       "n1",
		Hostname: "Web-1.example.com",
		Role:     objectv1.NodeRole_NODE_ROLE_MANAGER,
		Platform: "linux/arm64",
		Labels:   map[string]string{"rack": "r1", "empty": ""},
	}
}

func TestConstraintMatch(t *testing.T) {
	n := testNode()
	cases := []struct {
		expr    string
		explain string // "" when the node meets the constraint
	}{
		{"node.id==n1", ""},
		{"node.id!=n2", ""},
		{"node.id==N1", `node.id is "n1", not "N1"`},
		{"node.id!=n1", `node.id is "n1"`},
		// Host names ignore ASCII case, and only ASCII case.
		{"node.hostname==Web-1.example.com", ""},
		{"node.hostname==web-1.example.com", ""},
		{"node.hostname==WEB-1.EXAMPLE.COM", ""},
		{"node.hostname!=web-2.example.com", ""},
		{"node.hostname!=WEB-1.example.com", `node.hostname is "Web-1.example.com", which is "WEB-1.example.com" ignoring case`},
		{"node.hostname==web-2.example.com", `node.hostname is "Web-1.example.com", not "web-2.example.com" (even ignoring case)`},
		{"node.hostname==Web-1.example.co", `node.hostname is "Web-1.example.com", not "Web-1.example.co" (even ignoring case)`},
		{"node.role==manager", ""},
		{"node.role!=worker", ""},
		{"node.role==worker", `node.role is "manager", not "worker"`},
		{"node.role!=manager", `node.role is "manager"`},
		{"node.platform.os==linux", ""},
		{"node.platform.os==Linux", `node.platform.os is "linux", not "Linux"`},
		{"node.platform.os!=windows", ""},
		{"node.platform.arch==arm64", ""},
		{"node.platform.arch!=amd64", ""},
		{"node.platform.arch==amd64", `node.platform.arch is "arm64", not "amd64"`},
		{"node.labels.rack==r1", ""},
		{"node.labels.rack==R1", `node.labels.rack is "r1", not "R1"`},
		{"node.labels.rack!=r1", `node.labels.rack is "r1"`},
		{"node.labels.rack!=r2", ""},
		// A missing label differs from every value.
		{"node.labels.zone==a", "node.labels.zone is not set"},
		{"node.labels.zone!=a", ""},
		{"node.labels.Rack==r1", "node.labels.Rack is not set"},
	}
	for _, tc := range cases {
		c, err := scheduler.ParseConstraint(tc.expr)
		if err != nil {
			t.Fatalf("ParseConstraint(%q) = %v", tc.expr, err)
		}
		if got, want := c.Match(n), tc.explain == ""; got != want {
			t.Errorf("ParseConstraint(%q).Match(node) = %v, want %v", tc.expr, got, want)
		}
		if got := c.Explain(n); got != tc.explain {
			t.Errorf("ParseConstraint(%q).Explain(node) = %q, want %q", tc.expr, got, tc.explain)
		}
	}
}

// TestHostnameCase pins the one place where case does not matter, with
// letters outside ASCII, which DNS does not fold.
func TestHostnameCase(t *testing.T) {
	cases := []struct {
		hostname, value string
		match           bool
	}{
		{"web-1", "WEB-1", true},
		{"Web-1", "wEB-1", true},
		{"web-1", "web-1 ", true}, // the value is trimmed
		{"web-1", "web_1", false},
		{"web-1", "web-10", false},
		{"ünï", "ÜNÏ", false},      // not ASCII: compared exactly
		{"k8s", "\u212a8s", false}, // the Kelvin sign is not K
		{"", "x", false},
	}
	for _, tc := range cases {
		n := &schedulerv1.NodeInfo{Id: "n", Hostname: tc.hostname}
		for _, op := range []string{"==", "!="} {
			c, err := scheduler.ParseConstraint("node.hostname" + op + tc.value)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := c.Match(n), tc.match == (op == "=="); got != want {
				t.Errorf("node.hostname%s%s on host %q: Match = %v, want %v", op, tc.value, tc.hostname, got, want)
			}
		}
	}
}

func TestPlatformParts(t *testing.T) {
	cases := []struct{ platform, os, arch string }{
		{"linux/amd64", "linux", "amd64"},
		{"linux/arm/v7", "linux", "arm/v7"},
		{"linux", "linux", ""},
		{"", "", ""},
	}
	osAttr, _ := scheduler.ParseAttribute("node.platform.os")
	archAttr, _ := scheduler.ParseAttribute("node.platform.arch")
	for _, tc := range cases {
		n := &schedulerv1.NodeInfo{Platform: tc.platform}
		os, _ := osAttr.Value(n)
		arch, _ := archAttr.Value(n)
		if os != tc.os || arch != tc.arch {
			t.Errorf("platform %q: os %q, arch %q; want %q, %q", tc.platform, os, arch, tc.os, tc.arch)
		}
	}
}

func TestConstraints(t *testing.T) {
	n := testNode()
	cs, err := scheduler.ParseConstraints([]string{"node.role==manager", "node.labels.rack!=r1", "node.labels.zone==a"})
	if err != nil {
		t.Fatal(err)
	}
	if cs.Match(n) {
		t.Errorf("Constraints.Match = true, want false")
	}
	if got, want := cs.Explain(n), `node.labels.rack!=r1: node.labels.rack is "r1"`; got != want {
		t.Errorf("Constraints.Explain = %q, want %q (the first constraint failed)", got, want)
	}
	if cs, _ := scheduler.ParseConstraints(nil); !cs.Match(n) || cs.Explain(n) != "" {
		t.Errorf("no constraints: Match = false or Explain = %q, want every node to meet them", cs.Explain(n))
	}
	if _, err := scheduler.ParseConstraints([]string{"node.role==worker", "rack==a"}); err == nil || !strings.Contains(err.Error(), `"rack==a"`) {
		t.Errorf("ParseConstraints(one bad) = %v, want the error to name the bad one", err)
	}
}

// FuzzParseConstraint checks that parsing never panics and that what
// parses prints back to an expression that parses the same.
func FuzzParseConstraint(f *testing.F) {
	for _, s := range []string{"node.role==manager", " node.labels.rack != a ", "node.labels.k!==v", "k==a==b", "==", "", "node.labels.==x", "node.hostname==ÄB"} {
		f.Add(s)
	}
	n := testNode()
	f.Fuzz(func(t *testing.T, expr string) {
		c, err := scheduler.ParseConstraint(expr)
		if err != nil {
			return
		}
		again, err := scheduler.ParseConstraint(c.String())
		if err != nil || again != c {
			t.Fatalf("ParseConstraint(%q) = %v, %v; want %v", c.String(), again, err, c)
		}
		if (c.Explain(n) == "") != c.Match(n) {
			t.Fatalf("%v: Match = %v but Explain = %q", c, c.Match(n), c.Explain(n))
		}
	})
}

func ExampleConstraint_Explain() {
	node := &schedulerv1.NodeInfo{Id: "n1", Hostname: "Web-1", Labels: map[string]string{"rack": "r2"}}
	for _, expr := range []string{"node.hostname==web-1", "node.labels.rack==r1", "node.labels.zone==a"} {
		c, err := scheduler.ParseConstraint(expr)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s: %v %q\n", c, c.Match(node), c.Explain(node))
	}
	// Output:
	// node.hostname==web-1: true ""
	// node.labels.rack==r1: false "node.labels.rack is \"r2\", not \"r1\""
	// node.labels.zone==a: false "node.labels.zone is not set"
}
