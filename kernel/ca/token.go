package ca

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/shoalhq/shoal/sdk"
)

const (
	// tokenPrefix starts every join token; the 1 is the format's version.
	tokenPrefix = "SHL1"
	// digestHexLen is the length of a SHA-256 digest in hex.
	digestHexLen = 64
	// secretBytes is the entropy of a token's secret: 128 bits, beyond any
	// online guessing.
	secretBytes = 16
	// secretHexLen is the secret's length in a token.
	secretHexLen = 2 * secretBytes
)

// JoinToken is a parsed join token.
type JoinToken struct {
	// Digest is the pinned root CA digest, "sha256:<hex>".
	Digest string
	// Secret proves the right to join; it selects the role.
	Secret string
}

// String formats the token as "SHL1-<hex digest>-<secret>".
func (t JoinToken) String() string {
	return tokenPrefix + "-" + strings.TrimPrefix(t.Digest, digestPrefix) + "-" + t.Secret
}

// NewJoinToken returns a new join token pinning the root CA digest
// ("sha256:<hex>") with a fresh 128-bit random secret.
func NewJoinToken(digest string) (string, error) {
	hexDigest, ok := strings.CutPrefix(digest, digestPrefix)
	if !ok || checkHex(hexDigest, digestHexLen, "digest") != nil {
		return "", fmt.Errorf("new join token: digest %q is not %s<64 lowercase hex characters>: %w", digest, digestPrefix, sdk.ErrInvalidArgument)
	}
	secret := make([]byte, secretBytes)
	if _, err := rand.Read(secret); err != nil {
		return "", fmt.Errorf("new join token: %w", err)
	}
	return JoinToken{Digest: digest, Secret: hex.EncodeToString(secret)}.String(), nil
}

// ParseJoinToken parses "SHL1-<64 hex digest>-<32 hex secret>". Surrounding
// white space is ignored (tokens are pasted from terminals). Errors are of
// kind sdk.ErrInvalidArgument and say what is malformed; they never quote
// the token, which is a secret.
func ParseJoinToken(s string) (JoinToken, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return JoinToken{}, tokenError("token is empty")
	}
	parts := strings.Split(s, "-")
	if parts[0] != tokenPrefix {
		return JoinToken{}, tokenError(fmt.Sprintf("token does not start with %q", tokenPrefix+"-"))
	}
	if len(parts) != 3 {
		return JoinToken{}, tokenError(fmt.Sprintf("token has %d dash-separated parts, want 3: %s-<digest>-<secret>", len(parts), tokenPrefix))
	}
	if err := checkHex(parts[1], digestHexLen, "digest"); err != nil {
		return JoinToken{}, err
	}
	if err := checkHex(parts[2], secretHexLen, "secret"); err != nil {
		return JoinToken{}, err
	}
	return JoinToken{Digest: digestPrefix + parts[1], Secret: parts[2]}, nil
}

// checkHex checks that s is n lowercase hex characters.
func checkHex(s string, n int, what string) error {
	if len(s) != n {
		return tokenError(fmt.Sprintf("%s has %d characters, want %d", what, len(s), n))
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return tokenError(fmt.Sprintf("%s has character %q, want lowercase hex (0-9, a-f)", what, c))
		}
	}
	return nil
}

// tokenError is a malformed join token, of kind sdk.ErrInvalidArgument.
type tokenError string

func (e tokenError) Error() string        { return "parse join token: " + string(e) }
func (e tokenError) Is(target error) bool { return target == sdk.ErrInvalidArgument }
