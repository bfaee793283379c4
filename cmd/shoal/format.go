package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
)

// jsonOptions write the proto field names (snake_case, as in the .proto
// files), which are as stable as the protos themselves.
var jsonOptions = protojson.MarshalOptions{UseProtoNames: true}

// writeIndented re-indents compact JSON with encoding/json: protojson's own
// multiline output varies its whitespace on purpose, and output that scripts
// and goldens read should not.
func writeIndented(w io.Writer, compact []byte) error {
	var out bytes.Buffer
	if err := json.Indent(&out, compact, "", "  "); err != nil {
		return fmt.Errorf("indent json: %w", err)
	}
	out.WriteByte('\n')
	_, err := w.Write(out.Bytes())
	return err
}

// enumName is the short lower-case name of a generated enum value:
// TASK_STATE_RUNNING → "running", RESTART_CONDITION_ON_FAILURE → "on-failure".
func enumName(full, prefix string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(full, prefix)), "_", "-")
}

// shortID is the 12-character form of an ID that tables show.
func shortID(id string, noTrunc bool) string {
	if noTrunc || len(id) <= 12 {
		return id
	}
	return id[:12]
}

// humanDuration is d for people, with docker's wording:
// "less than a second", "5 seconds", "about a minute", "3 hours", "2 weeks".
func humanDuration(d time.Duration) string {
	if s := int(d.Seconds()); s < 1 {
		return "less than a second"
	} else if s == 1 {
		return "1 second"
	} else if s < 60 {
		return fmt.Sprintf("%d seconds", s)
	}
	if m := int(d.Minutes()); m == 1 {
		return "about a minute"
	} else if m < 60 {
		return fmt.Sprintf("%d minutes", m)
	}
	switch h := int(d.Hours() + 0.5); {
	case h == 1:
		return "about an hour"
	case h < 48:
		return fmt.Sprintf("%d hours", h)
	case h < 24*7*2:
		return fmt.Sprintf("%d days", h/24)
	case h < 24*30*2:
		return fmt.Sprintf("%d weeks", h/24/7)
	case h < 24*365*2:
		return fmt.Sprintf("%d months", h/24/30)
	}
	return fmt.Sprintf("%d years", int(d.Hours())/24/365)
}

// memoryPattern is docker's syntax for sizes: a decimal number, then an
// optional unit letter, optional "i" and optional "b", in any case.
var memoryPattern = regexp.MustCompile(`^(\d+(?:\.\d+)?) ?([kKmMgGtTpP])?[iI]?[bB]?$`)

// parseMemory parses a size in docker's units, which are binary whatever
// the spelling: "512" bytes, "256MiB", "1G", "512m", "1.5g".
func parseMemory(s string) (int64, error) {
	m := memoryPattern.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("invalid size %q: want a number with an optional unit b, k, m, g, t or p", s)
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %w", s, err)
	}
	shift := 0
	if m[2] != "" {
		shift = strings.Index("kmgtp", strings.ToLower(m[2])) + 1
	}
	bytes := n * math.Pow(1024, float64(shift))
	if bytes >= math.MaxInt64 {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return int64(bytes), nil
}

// formatMemory is the inverse of parseMemory for display: the largest
// binary unit that keeps the number readable, e.g. "256MiB".
func formatMemory(n int64) string {
	const units = "KMGTP"
	v, unit := float64(n), -1
	for v >= 1024 && unit < len(units)-1 {
		v /= 1024
		unit++
	}
	if unit < 0 {
		return fmt.Sprintf("%dB", n)
	}
	return strconv.FormatFloat(v, 'f', -1, 64) + units[unit:unit+1] + "iB"
}

// parseCPUs parses a decimal number of cores ("0.5", "2") into nano CPUs,
// exactly: a value finer than a nano CPU is refused, not rounded.
func parseCPUs(s string) (int64, error) {
	r, ok := new(big.Rat).SetString(s)
	if !ok || strings.ContainsAny(s, "/eE") {
		return 0, fmt.Errorf("invalid number of CPUs %q: want a decimal such as 0.5 or 2", s)
	}
	if r.Sign() < 0 {
		return 0, fmt.Errorf("invalid number of CPUs %q: negative", s)
	}
	nano := r.Mul(r, big.NewRat(1e9, 1))
	if !nano.IsInt() {
		return 0, fmt.Errorf("invalid number of CPUs %q: finer than a billionth of a CPU", s)
	}
	if !nano.Num().IsInt64() {
		return 0, fmt.Errorf("invalid number of CPUs %q: too large", s)
	}
	return nano.Num().Int64(), nil
}

// formatCPUs is nano CPUs as a decimal number of cores.
func formatCPUs(nano int64) string {
	return strconv.FormatFloat(float64(nano)/1e9, 'f', -1, 64)
}
