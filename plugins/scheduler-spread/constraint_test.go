package main

import (
	"strings"
	"testing"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
)

func TestParseConstraint(t *testing.T) {
	cases := []struct {
		expr    string
		want    string // String() of the result; "" when an error is wanted
		wantErr string
	}{
		{expr: "node.id==abc", want: "node.id==abc"},
		{expr: "  node.labels.rack  !=  r1 ", want: "node.labels.rack!=r1"},
		{expr: "node.labels.a!=b==c", wantErr: "the value holds a second operator"},
		{expr: "node.labels.a==b!=c", wantErr: "the value holds a second operator"},
		// The first operator splits: k differs from "=v".
		{expr: "node.labels.k!==v", want: "node.labels.k!==v"},
		{expr: "node.labels.a b==c", wantErr: "the key holds '=', '!', white space or control characters"},
		{expr: "node.labels.a!b!=c", wantErr: "the key holds '=', '!', white space or control characters"},
		{expr: "node.hostname=h", wantErr: "want KEY==VALUE or KEY!=VALUE"},
		{expr: "node.role==", wantErr: "the value is missing"},
		{expr: "==worker", wantErr: `unknown node attribute ""`},
		{expr: "node.labels.==x", wantErr: `unknown node attribute "node.labels."`},
		{expr: "node.platform==linux", wantErr: `unknown node attribute "node.platform"`},
		{expr: "node.labels.k==a\tb", wantErr: "the value holds control characters"},
	}
	for _, tc := range cases {
		c, err := parseConstraint(tc.expr)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseConstraint(%q) = %v, %v; want an error with %q", tc.expr, c, err, tc.wantErr)
			}
		case err != nil || c.String() != tc.want:
			t.Errorf("parseConstraint(%q) = %q, %v; want %q", tc.expr, c.String(), err, tc.want)
		}
	}
}

func TestConstraintMatch(t *testing.T) {
	n := newNode(&schedulerv1.NodeInfo{
		Id:       "n1",
		Hostname: "Web-1.example.com",
		Role:     objectv1.NodeRole_NODE_ROLE_MANAGER,
		Platform: "linux/arm64",
		Labels:   map[string]string{"rack": "r1", "empty": ""},
	})
	cases := []struct {
		expr string
		want bool
	}{
		{"node.id==n1", true},
		{"node.id==N1", false},
		{"node.id!=n2", true},
		{"node.hostname==web-1.example.com", true},
		{"node.hostname!=WEB-1.EXAMPLE.COM", false},
		{"node.role==manager", true},
		{"node.role==worker", false},
		{"node.platform.os==linux", true},
		{"node.platform.arch==arm64", true},
		{"node.platform.arch!=amd64", true},
		{"node.labels.rack==r1", true},
		{"node.labels.rack==R1", false},
		{"node.labels.rack!=r1", false},
		{"node.labels.zone==a", false},
		{"node.labels.zone!=a", true},
	}
	for _, tc := range cases {
		c, err := parseConstraint(tc.expr)
		if err != nil {
			t.Fatalf("parseConstraint(%q) = %v", tc.expr, err)
		}
		if got := c.match(n); got != tc.want {
			t.Errorf("match(%q) = %v, want %v", tc.expr, got, tc.want)
		}
	}
}

func TestNodePlatform(t *testing.T) {
	cases := []struct{ platform, os, arch string }{
		{"linux/amd64", "linux", "amd64"},
		{"linux/arm/v7", "linux", "arm/v7"},
		{"linux", "linux", ""},
		{"", "", ""},
	}
	for _, tc := range cases {
		n := newNode(&schedulerv1.NodeInfo{Platform: tc.platform})
		if n.os != tc.os || n.arch != tc.arch {
			t.Errorf("newNode(platform %q) has os %q, arch %q; want %q, %q", tc.platform, n.os, n.arch, tc.os, tc.arch)
		}
	}
}
