package main

import (
	"slices"
	"testing"
)

func TestParseNetwork(t *testing.T) {
	for _, c := range []struct {
		in      string
		target  string
		aliases []string
		wantErr bool
	}{
		{in: "app", target: "app"},
		{in: "name=app", target: "app"},
		{in: "name=app,alias=db,alias=cache", target: "app", aliases: []string{"db", "cache"}},
		{in: "target=app,alias=db", target: "app", aliases: []string{"db"}},
		{in: "alias=db", wantErr: true},
		{in: "name=app,aliases=db", wantErr: true},
	} {
		a, err := parseNetwork(c.in)
		if (err != nil) != c.wantErr {
			t.Errorf("parseNetwork(%q) error %v, want error %v", c.in, err, c.wantErr)
			continue
		}
		if err == nil && (a.GetTarget() != c.target || !slices.Equal(a.GetAliases(), c.aliases)) {
			t.Errorf("parseNetwork(%q) = %v, want target %q aliases %q", c.in, a, c.target, c.aliases)
		}
	}
}
