package netfiles

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shoalhq/shoal/sdk"
)

// HostConfig is the node's own resolver configuration, from its
// /etc/resolv.conf: where names that are not the cluster's go, and what a
// task's resolv.conf copies.
type HostConfig struct {
	// Servers are the nameservers, as host:port, in order.
	Servers []string
	// Search are the search domains, lower case, without final dots.
	Search []string
	// Options are the options as written ("ndots:2", "rotate", ...).
	Options []string
	// Timeout and Attempts are resolv.conf's timeout:N (default 5 s) and
	// attempts:N (default 2).
	Timeout  time.Duration
	Attempts int
}

// DefaultResolvConf is where the host's resolver configuration is read.
const DefaultResolvConf = "/etc/resolv.conf"

// Bounds on a resolv.conf, as the C library has them (more nameservers
// than 3 are ignored there too).
const (
	maxServers    = 3
	maxSearch     = 32
	maxResolvConf = 64 << 10
)

// maxNameLen bounds a name of /etc/hosts: a DNS name in presentation form,
// without the final dot, as the node's DNS server takes them.
const maxNameLen = 253

// ReadHostConfig reads and parses a resolv.conf.
func ReadHostConfig(path string) (HostConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return HostConfig{}, fmt.Errorf("read resolver configuration: %w", err)
	}
	defer f.Close()
	hc, err := ParseHostConfig(f)
	if err != nil {
		return HostConfig{}, fmt.Errorf("read resolver configuration %s: %w", path, err)
	}
	return hc, nil
}

// ParseHostConfig parses a resolv.conf as the C library does: nameserver
// (at most 3), search and domain (the last one of them wins), options.
// Unknown lines and nameservers that are not IP addresses are ignored, as
// the C library ignores them.
func ParseHostConfig(r io.Reader) (HostConfig, error) {
	hc := HostConfig{Timeout: 5 * time.Second, Attempts: 2}
	sc := bufio.NewScanner(io.LimitReader(r, maxResolvConf))
	for sc.Scan() {
		text := sc.Text()
		if i := strings.IndexAny(text, "#;"); i >= 0 {
			text = text[:i]
		}
		f := strings.Fields(text)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) < 2 || len(hc.Servers) == maxServers {
				continue
			}
			a, err := netip.ParseAddr(f[1])
			if err != nil {
				continue
			}
			hc.Servers = append(hc.Servers, net.JoinHostPort(a.String(), "53"))
		case "domain", "search":
			hc.Search = hc.Search[:0]
			for _, d := range f[1:] {
				if d = CanonicalName(d); d != "" && len(hc.Search) < maxSearch {
					hc.Search = append(hc.Search, d)
				}
			}
		case "options":
			for _, o := range f[1:] {
				hc.Options = append(hc.Options, o)
				k, v, _ := strings.Cut(o, ":")
				n, err := strconv.Atoi(v)
				switch {
				case err != nil:
				case k == "timeout" && n >= 1:
					hc.Timeout = time.Duration(min(n, 30)) * time.Second
				case k == "attempts" && n >= 1:
					hc.Attempts = min(n, 5)
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return HostConfig{}, err
	}
	if len(hc.Search) == 0 {
		hc.Search = nil
	}
	return hc, nil
}

// ResolvConf renders a task's /etc/resolv.conf: the node's DNS server at
// nameserver (the gateway of the task's first network on this node), and
// the host's search domains and options, so that a task resolves the
// host's short names as the host does.
func ResolvConf(nameserver netip.Addr, host HostConfig) ([]byte, error) {
	if !nameserver.IsValid() {
		return nil, fmt.Errorf("render resolv.conf: nameserver: is required: %w", sdk.ErrInvalidArgument)
	}
	var b bytes.Buffer
	b.WriteString("# Written by shoal: the node's DNS server answers the cluster's names and\n")
	b.WriteString("# forwards the others to the node's resolvers.\n")
	fmt.Fprintf(&b, "nameserver %s\n", nameserver.Unmap())
	if err := writeWords(&b, "search", host.Search); err != nil {
		return nil, err
	}
	if err := writeWords(&b, "options", host.Options); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Hosts renders a task's /etc/hosts: the localhost lines, and addr with
// names (its hostname and task name, say) when addr is valid.
func Hosts(addr netip.Addr, names ...string) ([]byte, error) {
	if !addr.IsValid() {
		return renderHosts(nil, nil), nil
	}
	var fe sdk.FieldErrors
	for i, n := range names {
		checkHostsName(&fe, fmt.Sprintf("names[%d]", i), n)
	}
	if err := fe.Err(); err != nil {
		return nil, fmt.Errorf("render hosts: %w", err)
	}
	return renderHosts([]netip.Addr{addr}, names), nil
}

// renderHosts writes the localhost lines, then one line per address (each
// once) with the names (each once, compared without case). The names have
// been checked.
func renderHosts(addrs []netip.Addr, names []string) []byte {
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\n")
	b.WriteString("ff00::0\tip6-mcastprefix\n")
	b.WriteString("ff02::1\tip6-allnodes\n")
	b.WriteString("ff02::2\tip6-allrouters\n")
	var seen []string
	for _, n := range names {
		if !containsFold(seen, n) {
			seen = append(seen, n)
		}
	}
	if len(seen) == 0 {
		return b.Bytes()
	}
	line := strings.Join(seen, " ")
	var done []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if !a.IsValid() || slices.Contains(done, a) {
			continue
		}
		done = append(done, a)
		fmt.Fprintf(&b, "%s\t%s\n", a, line)
	}
	return b.Bytes()
}

// checkHostsName adds an error naming field unless name fits on a line of
// /etc/hosts as one name.
func checkHostsName(fe *sdk.FieldErrors, field, name string) {
	switch {
	case name == "":
		fe.Add(field, "is empty: not a host name")
	case len(name) > maxNameLen:
		fe.Add(field, "%q is %d characters, a host name at most %d", name, len(name), maxNameLen)
	case strings.ContainsFunc(name, badHostsRune):
		fe.Add(field, "%q is not a host name: it has white space, control characters, '#' or ';'", name)
	}
}

func writeWords(b *bytes.Buffer, key string, words []string) error {
	if len(words) == 0 {
		return nil
	}
	for _, w := range words {
		if w == "" || strings.ContainsFunc(w, badHostsRune) {
			return fmt.Errorf("render resolv.conf: %s: %q is not a word: %w", key, w, sdk.ErrInvalidArgument)
		}
	}
	fmt.Fprintf(b, "%s %s\n", key, strings.Join(words, " "))
	return nil
}

// badHostsRune: white space, control characters and comment starts would
// break a line of /etc/hosts or resolv.conf.
func badHostsRune(r rune) bool {
	return r <= ' ' || r == 0x7f || r == '#' || r == ';'
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// CanonicalName returns name in ASCII lower case without its final dot,
// as DNS compares names (and the node's DNS index keys them).
func CanonicalName(name string) string {
	name = strings.TrimSuffix(name, ".")
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= 'A' && c <= 'Z' {
			b := []byte(name)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return name
}
