package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/shoalhq/shoal/sdk"
)

// This file binds and serves the listening addresses: SetAddrs, the
// sockets, and the bounds on what a client may send.

// listener is one address: its UDP and TCP servers.
type listener struct {
	asked string // the address as asked (addrKey): port 0 stays 0
	addr  string // as bound
	udp   *dns.Server
	tcp   *dns.Server
	// cancel ends the forwards of its queries, so that stopping it does
	// not wait for them.
	cancel context.CancelFunc
	// started and done are made when Run serves it, closed when each
	// server has started and when its ActivateAndServe returned.
	started, done [2]chan struct{}
}

func (ln *listener) servers() [2]*dns.Server { return [2]*dns.Server{ln.udp, ln.tcp} }

// SetAddrs makes the server listen on exactly addrs (host:port, each over
// UDP and TCP), opening the new ones and closing the ones no longer
// listed; listeners kept are untouched (no query on them is lost). It
// returns an error naming every address it could not listen on; the
// others are still applied. More than 1,024 addresses (maxAddrs) is an
// error of kind sdk.ErrInvalidArgument, and nothing changes then. Safe for
// concurrent use; after Run returned, or after Close, it returns an error.
//
// An address with port 0 gets a free port (Addrs tells which); a later
// call keeps it when given either form. Addresses are bound with
// IP_FREEBIND, so that one not yet on any interface binds (doc.go,
// "Goroutines"). When SetAddrs returns, the addresses removed are closed
// and their goroutines gone (their forwards in flight are cancelled), and
// while Run runs, the addresses added are served.
func (s *Server) SetAddrs(addrs []string) error {
	if len(addrs) > maxAddrs {
		var fe sdk.FieldErrors
		fe.Add("addrs", "at most %d addresses, got %d", maxAddrs, len(addrs))
		return fmt.Errorf("dns: set addresses: %w", fe.Err())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateStopped:
		return errors.New("dns: set addresses: the server has stopped (Run returned)")
	case stateClosed:
		return errors.New("dns: set addresses: the server is closed")
	}
	return s.setAddrs(addrs)
}

// setAddrs is SetAddrs with s.mu held.
func (s *Server) setAddrs(addrs []string) error {
	byAddr := map[string]*listener{}
	for _, ln := range s.listeners {
		byAddr[ln.asked], byAddr[ln.addr] = ln, ln
	}
	keep := map[*listener]bool{}
	for _, a := range addrs {
		if ln := byAddr[addrKey(a)]; ln != nil {
			keep[ln] = true
		}
	}
	var gone []*listener
	for _, ln := range s.listeners {
		if !keep[ln] {
			gone = append(gone, ln)
			delete(byAddr, ln.asked)
			delete(byAddr, ln.addr)
		}
	}
	// Closed before the new ones are bound, so that an address may take
	// the place of one that covered it (a wildcard, say).
	s.stopAll(gone)

	var (
		next []*listener
		in   = map[*listener]bool{}
		errs []error
	)
	for _, a := range addrs {
		ln := byAddr[addrKey(a)]
		if ln == nil {
			var err error
			if ln, err = s.open(a); err != nil {
				errs = append(errs, fmt.Errorf("dns: listen on %s: %w", a, err))
				continue
			}
			byAddr[ln.asked], byAddr[ln.addr] = ln, ln
			if s.state == stateRunning {
				s.serve(ln)
			}
		}
		if !in[ln] {
			in[ln] = true
			next = append(next, ln)
		}
	}
	s.listeners = next
	s.publish()
	return errors.Join(errs...)
}

// addrKey is addr in one form when it is an IP address and port, so that
// [::0]:53 and [::]:53, or [2001:DB8::1]:53 and [2001:db8::1]:53, are the
// same listener; other forms (a host name) are kept as written.
func addrKey(addr string) string {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return ap.String()
	}
	return addr
}

// publish makes the listeners' addresses those Addrs returns and those
// never forwarded to.
func (s *Server) publish() {
	addrs := make([]string, len(s.listeners))
	self := make(map[string]bool, len(s.listeners))
	for i, ln := range s.listeners {
		addrs[i] = ln.addr
		self[ln.addr] = true
	}
	s.addrs.Store(&addrs)
	s.hostMu.Lock()
	defer s.hostMu.Unlock()
	s.self = self
	s.filterHost(false)
}

// open binds addr and makes its servers (not started).
func (s *Server) open(addr string) (*listener, error) {
	pc, l, err := listen(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(s.fwdCtx)
	h := handler{s: s, ctx: ctx}
	return &listener{
		asked:  addrKey(addr),
		addr:   pc.LocalAddr().String(),
		udp:    s.newServer(&dns.Server{PacketConn: pc}, h),
		tcp:    s.newServer(&dns.Server{Listener: &limitListener{Listener: l, sem: make(chan struct{}, s.cfg.MaxTCPConns)}}, h),
		cancel: cancel,
	}, nil
}

// serve starts ln's servers in Run's goroutines; s.mu is held and Run
// runs.
func (s *Server) serve(ln *listener) {
	for i, srv := range ln.servers() {
		started, done := make(chan struct{}), make(chan struct{})
		ln.started[i], ln.done[i] = started, done
		srv.NotifyStartedFunc = func() { close(started) }
		s.wg.Go(func() {
			defer close(done)
			if err := srv.ActivateAndServe(); err != nil {
				s.errMu.Lock()
				s.errs = append(s.errs, fmt.Errorf("%s: %w", ln.addr, err))
				s.errMu.Unlock()
				s.runCancel()
			}
		})
	}
}

// stop closes ln's sockets and, when Run serves it, returns once its
// goroutines (miekg/dns's per-query ones included) have exited: its
// forwards in flight are cancelled, so that only answers being written
// are waited for (WriteTimeout).
func (s *Server) stop(ln *listener) {
	ln.cancel()
	for i, srv := range ln.servers() {
		if ln.done[i] == nil { // never served
			if srv.PacketConn != nil {
				srv.PacketConn.Close()
			}
			if srv.Listener != nil {
				srv.Listener.Close()
			}
			continue
		}
		// Shutdown fails on a server that has not started yet.
		select {
		case <-ln.started[i]:
			srv.Shutdown()
		case <-ln.done[i]:
		}
		<-ln.done[i]
	}
}

// stopAll stops the listeners in parallel, so that one slow to stop does
// not hold up the others.
func (s *Server) stopAll(ls []*listener) {
	var wg sync.WaitGroup
	for _, ln := range ls {
		wg.Go(func() { s.stop(ln) })
	}
	wg.Wait()
}

func (s *Server) newServer(srv *dns.Server, h dns.Handler) *dns.Server {
	srv.Handler = h
	srv.UDPSize = maxQuerySize
	srv.ReadTimeout = 2 * time.Second
	srv.WriteTimeout = 2 * time.Second
	srv.IdleTimeout = func() time.Duration { return 8 * time.Second }
	srv.MaxTCPQueries = 128
	srv.MsgAcceptFunc = acceptQuery
	srv.DecorateReader = func(r dns.Reader) dns.Reader { return sizeReader{r.(dns.PacketConnReader)} }
	return srv
}

// listenConfig binds with IP_FREEBIND.
var listenConfig = net.ListenConfig{Control: freebind}

// listen binds addr over UDP and TCP, on the same port.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	ctx := context.Background()
	var lastErr error
	for range 10 {
		pc, err := listenConfig.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, nil, err
		}
		p := port
		if p == "0" {
			p = strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
		}
		l, err := listenConfig.Listen(ctx, "tcp", net.JoinHostPort(host, p))
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		lastErr = err
		if port != "0" {
			break
		}
	}
	return nil, nil, lastErr
}

// freebind sets IP_FREEBIND (IPV6_FREEBIND on an IPv6 socket) before the
// socket is bound, so that an address not (yet) on any interface binds:
// doc.go, "Goroutines", tells why.
func freebind(network, _ string, c syscall.RawConn) error {
	var err error
	cerr := c.Control(func(fd uintptr) {
		if strings.HasSuffix(network, "6") {
			err = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, 1)
		} else {
			err = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND, 1)
		}
	})
	if cerr != nil {
		return cerr
	}
	if err != nil {
		return fmt.Errorf("set IP_FREEBIND: %w", os.NewSyscallError("setsockopt", err))
	}
	return nil
}

// acceptQuery is miekg/dns's default check of a query's header, except
// that more than one question is accepted (only the first is answered):
// responses are ignored, opcodes other than QUERY get NOTIMP, and no
// question, answer or authority records, or more than 2 additional records
// get FORMERR.
func acceptQuery(dh dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	if dh.Bits&qr != 0 {
		return dns.MsgIgnore
	}
	if opcode := int(dh.Bits>>11) & 0xF; opcode != dns.OpcodeQuery {
		return dns.MsgRejectNotImplemented
	}
	if dh.Qdcount == 0 || dh.Ancount > 0 || dh.Nscount > 0 || dh.Arcount > 2 {
		return dns.MsgReject
	}
	return dns.MsgAccept
}

// sizeReader drops TCP queries larger than maxQuerySize (closing the
// connection); UDP ones are bounded by the server's read buffer.
type sizeReader struct{ dns.PacketConnReader }

var errQueryTooLarge = errors.New("query too large")

func (r sizeReader) ReadTCP(conn net.Conn, timeout time.Duration) ([]byte, error) {
	m, err := r.PacketConnReader.ReadTCP(conn, timeout)
	if err == nil && len(m) > maxQuerySize {
		return nil, errQueryTooLarge
	}
	return m, err
}

// limitListener closes connections past its bound at once.
type limitListener struct {
	net.Listener
	sem chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
		default:
			c.Close()
		}
	}
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
