package config

import (
	"encoding"
	"fmt"
	"strings"
	"time"
)

var (
	_ encoding.TextUnmarshaler = (*Duration)(nil)
	_ encoding.TextMarshaler   = Duration{}
)

// Duration is a time.Duration written in TOML as a string with a unit, as
// time.ParseDuration reads it: "500ms", "5s", "2160h". A bare integer is
// rejected rather than read as nanoseconds, which is never what an operator
// meant.
type Duration struct{ time.Duration }

// UnmarshalText parses a duration such as "500ms".
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("invalid duration %q: want a number with a unit, like \"500ms\", \"5s\" or \"2h\"", text)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration in the shortest form ParseDuration reads
// back: "2160h" rather than "2160h0m0s".
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(FormatDuration(d.Duration)), nil
}

// FormatDuration is d.String() without zero minutes and seconds after a
// larger unit: 5m0s → 5m, 1h0m0s → 1h, 1h0m30s stays. It is how durations
// are written in config files and in messages about them, here and in the
// control API's validation of cluster settings.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
