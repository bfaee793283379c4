package hostnet

import (
	"fmt"
	"net/netip"
	"os"

	"github.com/shoalhq/shoal/sdk"
)

// EnableForwarding turns on IPv4 forwarding, which routing between a
// network's bridge and the node's links needs.
func EnableForwarding() error {
	const path = "/proc/sys/net/ipv4/ip_forward"
	if b, err := os.ReadFile(path); err == nil && len(b) > 0 && b[0] == '1' {
		return nil
	}
	if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("enable IPv4 forwarding: %w", err)
	}
	return nil
}

// ParseIPv4Prefix parses a canonical IPv4 network ("10.200.0.0/16"). When s
// is not one, it adds a FieldError for field to fe and returns false.
func ParseIPv4Prefix(fe *sdk.FieldErrors, field, s string) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		fe.Add(field, "%q is not a network in CIDR form (e.g. \"10.200.0.0/16\")", s)
	case !p.Addr().Is4():
		fe.Add(field, "%s is not IPv4: only IPv4 networks are supported", p)
	case p.Masked() != p:
		fe.Add(field, "%s has host bits set: the network is %s", p, p.Masked())
	default:
		return p, true
	}
	return netip.Prefix{}, false
}
