// Package ids makes object IDs.
package ids

import (
	"crypto/rand"
	"fmt"
)

// Length is the number of characters in an ID.
const Length = 25

// New returns a random 25-character base-36 ID (about 129 bits, the shape of
// SwarmKit's IDs): random enough never to collide, and short prefixes are
// unambiguous for people typing them.
func New() string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	// Each character is a random byte below 252 (7 × 36) modulo 36, so
	// all 36 are equally likely; the few bytes above are skipped. One read
	// of 40 bytes nearly always covers the 25 characters: a creation of
	// 10,000 tasks spent a tenth of a second here with a read per
	// character.
	b := make([]byte, 0, Length)
	var buf [40]byte
	for len(b) < Length {
		if _, err := rand.Read(buf[:]); err != nil {
			// The OS gives no entropy: no ID (nor key) is safe to make.
			panic(fmt.Sprintf("crypto/rand: %v", err))
		}
		for _, x := range buf {
			if x < 252 && len(b) < Length {
				b = append(b, alphabet[x%36])
			}
		}
	}
	return string(b)
}
