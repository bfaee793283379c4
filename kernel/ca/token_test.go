package ca

import (
	"errors"
	"strings"
	"testing"

	"github.com/shoalhq/shoal/sdk"
)

func TestParseJoinToken(t *testing.T) {
	digest := strings.Repeat("ab", 32)
	secret := strings.Repeat("0f", 16)
	valid := "SHL1-" + digest + "-" + secret
	tests := []struct {
		name    string
		in      string
		want    JoinToken
		wantErr string // substring; "" for success
	}{
		{"valid", valid, JoinToken{Digest: "sha256:" + digest, Secret: secret}, ""},
		{"surrounding space", " \t" + valid + "\n", JoinToken{Digest: "sha256:" + digest, Secret: secret}, ""},
		{"empty", "", JoinToken{}, "token is empty"},
		{"other prefix", "SWMTKN-" + digest + "-" + secret, JoinToken{}, `does not start with "SHL1-"`},
		{"lowercase prefix", "shl1-" + digest + "-" + secret, JoinToken{}, `does not start with "SHL1-"`},
		{"no secret", "SHL1-" + digest, JoinToken{}, "has 2 dash-separated parts, want 3"},
		{"extra part", valid + "-x", JoinToken{}, "has 4 dash-separated parts, want 3"},
		{"short digest", "SHL1-" + digest[:10] + "-" + secret, JoinToken{}, "digest has 10 characters, want 64"},
		{"uppercase digest", "SHL1-" + strings.ToUpper(digest) + "-" + secret, JoinToken{}, `digest has character 'A', want lowercase hex`},
		{"empty secret", "SHL1-" + digest + "-", JoinToken{}, "secret has 0 characters, want 32"},
		{"long secret", valid + "00", JoinToken{}, "secret has 34 characters, want 32"},
		{"secret not hex", "SHL1-" + digest + "-" + strings.Repeat("z", 32), JoinToken{}, `secret has character 'z', want lowercase hex`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseJoinToken(tt.in)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("ParseJoinToken(%q) = %+v, %v, want %+v, nil", tt.in, got, err, tt.want)
				}
				if s := got.String(); s != valid {
					t.Errorf("ParseJoinToken(%q).String() = %q, want %q", tt.in, s, valid)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseJoinToken(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
			}
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Errorf("ParseJoinToken(%q) error %v is not sdk.ErrInvalidArgument", tt.in, err)
			}
			if len(tt.in) > 40 && strings.Contains(err.Error(), tt.in[len(tt.in)-20:]) {
				t.Errorf("ParseJoinToken(%q) error %q quotes the token", tt.in, err)
			}
		})
	}
}

func TestNewJoinToken(t *testing.T) {
	digest := Digest([]byte("some certificate"))
	a, err := NewJoinToken(digest)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewJoinToken(digest)
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Errorf("NewJoinToken made the same token twice: %q", a)
	}
	tok, err := ParseJoinToken(a)
	if err != nil {
		t.Fatalf("ParseJoinToken(NewJoinToken()) error = %v", err)
	}
	if tok.Digest != digest {
		t.Errorf("ParseJoinToken(NewJoinToken(%q)).Digest = %q", digest, tok.Digest)
	}
	if len(tok.Secret)*4 < 128 {
		t.Errorf("secret %q has %d bits, want at least 128", tok.Secret, len(tok.Secret)*4)
	}
	for _, bad := range []string{"", "sha256:abc", strings.TrimPrefix(digest, "sha256:"), "md5:" + strings.TrimPrefix(digest, "sha256:")} {
		if _, err := NewJoinToken(bad); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("NewJoinToken(%q) error = %v, want sdk.ErrInvalidArgument", bad, err)
		}
	}
}
