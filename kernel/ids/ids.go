// Package ids makes object IDs.
package ids

import (
	"crypto/rand"
	"fmt"
	"math/big"
)

// Length is the number of characters in an ID.
const Length = 25

// New returns a random 25-character base-36 ID (about 129 bits, the shape of
// SwarmKit's IDs): random enough never to collide, and short prefixes are
// unambiguous for people typing them.
func New() string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	limit := big.NewInt(int64(len(alphabet)))
	b := make([]byte, Length)
	for i := range b {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			// The OS gives no entropy: no ID (nor key) is safe to make.
			panic(fmt.Sprintf("crypto/rand: %v", err))
		}
		b[i] = alphabet[n.Int64()]
	}
	return string(b)
}
