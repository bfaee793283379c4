package netnstest

import (
	"fmt"
	"net"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NS is a network namespace of a test, held by an open handle: it has no
// name and no mount, and it is gone when the handle is closed.
type NS struct {
	Handle netns.NsHandle
}

// NewNS makes an empty namespace with lo up. It is removed when the test
// ends.
func NewNS(t testing.TB) *NS {
	t.Helper()
	type res struct {
		h   netns.NsHandle
		err error
	}
	c := make(chan res, 1)
	go func() {
		// Never unlocked: the thread ends with the goroutine, so no other
		// goroutine runs in the new namespace.
		runtime.LockOSThread()
		h, err := netns.New()
		c <- res{h, err}
	}()
	r := <-c
	if r.err != nil {
		t.Fatalf("new network namespace: %v", r.err)
	}
	ns := &NS{Handle: r.h}
	t.Cleanup(func() { ns.Handle.Close() })
	nl := ns.Netlink(t)
	lo, err := nl.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	return ns
}

// Path names the namespace for this process (netns.GetFromPath).
func (ns *NS) Path() string { return fmt.Sprintf("/proc/self/fd/%d", int(ns.Handle)) }

// Netlink is a netlink handle inside the namespace, closed when the test
// ends.
func (ns *NS) Netlink(t testing.TB) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns.Handle)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// Do runs f on a thread inside the namespace: the sockets it opens are the
// namespace's.
func (ns *NS) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with the goroutine, so no other
		// goroutine runs in the namespace.
		runtime.LockOSThread()
		if err := netns.Set(ns.Handle); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

// DoAt runs f on a thread inside the namespace mounted at path.
func DoAt(path string, f func() error) error {
	h, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer h.Close()
	return (&NS{Handle: h}).Do(f)
}

// Serve accepts on ln until the test ends, when it closes ln, and hands
// each connection to handle in a goroutine of its own.
func Serve(t testing.TB, ln net.Listener, handle func(net.Conn)) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
}
