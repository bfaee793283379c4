package lb

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// routeLocalnet is the sysctl that lets 127/8 addresses be routed off the
// loopback interface: the DNAT of a connection to 127.0.0.1:published
// sends a packet from 127.0.0.1 out of a bridge or the uplink, and its
// replies come back to 127.0.0.1 through them.
const routeLocalnet = "/proc/sys/net/ipv4/conf/all/route_localnet"

// setRouteLocalnet writes v to route_localnet in the Balancer's namespace
// and returns the value it had.
func (b *Balancer) setRouteLocalnet(v string) (prev string, err error) {
	err = b.inNetns(func() error {
		old, err := os.ReadFile(routeLocalnet)
		if err != nil {
			return err
		}
		prev = strings.TrimSpace(string(old))
		if prev == v {
			return nil
		}
		return os.WriteFile(routeLocalnet, []byte(v), 0o644)
	})
	if err != nil {
		return "", fmt.Errorf("route_localnet: %w", err)
	}
	return prev, nil
}

// inNetns runs f in the Balancer's namespace: /proc/sys/net is the
// namespace of the thread that opens it. A thread moved into another
// namespace is never given back to the runtime: it ends with its
// goroutine.
func (b *Balancer) inNetns(f func() error) error {
	if b.ns < 0 {
		return f()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(b.ns); err != nil {
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		errc <- f()
	}()
	return <-errc
}
