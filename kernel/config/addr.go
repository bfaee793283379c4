package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// AdvertiseAddr is the "host:port" other nodes dial to reach a listener on
// listen. A non-empty advertise wins: "host:port", or a bare host that takes
// the port of listen. Otherwise the host of listen is used when it is a
// specific address; when it is unspecified ("", 0.0.0.0, ::) the machine's
// first non-loopback, non-link-local IPv4 address on an interface that is up,
// else 127.0.0.1 (a single-machine cluster still works).
//
// listen must have a real port: callers that listen on port 0 pass the bound
// address of the listener.
func AdvertiseAddr(listen, advertise string) (string, error) {
	return advertiseAddr(listen, advertise, interfaceIPs)
}

// advertiseAddr is AdvertiseAddr with the machine's addresses given by ips.
func advertiseAddr(listen, advertise string, ips func() ([]net.IP, error)) (string, error) {
	lhost, lport, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("advertise address: listen address %q: %w", listen, err)
	}
	if advertise != "" {
		host, port, err := splitHostOptionalPort(advertise)
		if err != nil {
			return "", fmt.Errorf("advertise address %q: %w", advertise, err)
		}
		if port == "" {
			port = lport
		}
		if unspecifiedHost(host) {
			return "", fmt.Errorf("advertise address %q: host must be an address other nodes can dial, not unspecified", advertise)
		}
		if port == "0" {
			return "", fmt.Errorf("advertise address %q: port 0 cannot be dialed", advertise)
		}
		return net.JoinHostPort(host, port), nil
	}
	if lport == "0" {
		return "", fmt.Errorf("advertise address: listen address %q has port 0; pass the bound address", listen)
	}
	host, err := derivedHost(lhost, ips)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, lport), nil
}

// derivedHost is the host to advertise for a listener on lhost: lhost when
// it is a specific address, else the machine's first routable IPv4 address,
// else 127.0.0.1.
func derivedHost(lhost string, ips func() ([]net.IP, error)) (string, error) {
	if !unspecifiedHost(lhost) {
		return lhost, nil
	}
	all, err := ips()
	if err != nil {
		return "", fmt.Errorf("advertise address: list interface addresses: %w", err)
	}
	if ip := firstRoutableIPv4(all); ip != nil {
		return ip.String(), nil
	}
	return "127.0.0.1", nil
}

// advertiseHost is the IP address to advertise for a listener on listen
// ("ip:port", any port, 0 included): advertise when set, else derived like
// AdvertiseAddr's host.
func advertiseHost(listen, advertise string, ips func() ([]net.IP, error)) (string, error) {
	if advertise != "" {
		ip := net.ParseIP(advertise)
		if ip == nil || ip.IsUnspecified() {
			return "", fmt.Errorf("advertise address %q: must be an IP address other nodes can reach", advertise)
		}
		return ip.String(), nil
	}
	lhost, _, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("advertise address: listen address %q: %w", listen, err)
	}
	return derivedHost(lhost, ips)
}

// firstRoutableIPv4 is the first IPv4 address that is neither loopback,
// link-local (169.254/16, only reachable on one link) nor unspecified.
func firstRoutableIPv4(ips []net.IP) net.IP {
	for _, ip := range ips {
		ip4 := ip.To4()
		if ip4 == nil || ip4.IsLoopback() || ip4.IsLinkLocalUnicast() || ip4.IsUnspecified() {
			continue
		}
		return ip4
	}
	return nil
}

// interfaceIPs lists the addresses of the interfaces that are up and not
// loopback, in interface order. An interface whose addresses cannot be read
// is skipped: another one may still do.
func interfaceIPs() ([]net.IP, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var ips []net.IP
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				ips = append(ips, n.IP)
			}
		}
	}
	return ips, nil
}

// unspecifiedHost reports whether host means "every interface".
func unspecifiedHost(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// splitHostOptionalPort splits "host:port", "[v6]:port", or a bare host
// ("10.0.0.5", "::1", "[::1]", "node1.example"); port is "" for a bare host.
func splitHostOptionalPort(s string) (host, port string, err error) {
	if ip := net.ParseIP(s); ip != nil {
		return s, "", nil
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		inner := s[1 : len(s)-1]
		if net.ParseIP(inner) == nil {
			return "", "", fmt.Errorf("%q is not an IPv6 address", inner)
		}
		return inner, "", nil
	}
	if !strings.Contains(s, ":") {
		return s, "", nil
	}
	host, port, err = net.SplitHostPort(s)
	if err != nil {
		return "", "", err
	}
	return host, port, nil
}

// bracketIPv6 writes an IPv6 host in brackets so that it can be given
// where "host" or "host:port" is read.
func bracketIPv6(host string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}

// parsePort reads a decimal port number.
func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 0 || p > 65535 || s != strconv.Itoa(p) {
		return 0, fmt.Errorf("port %q is not a number between 0 and 65535", s)
	}
	return p, nil
}

// validHost reports whether host is an IP address or a DNS name (labels of
// letters, digits, '-' and '_', at most 63 bytes each, 253 in all).
func validHost(host string) bool {
	if net.ParseIP(host) != nil {
		return true
	}
	if host == "" || len(host) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(host, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}
