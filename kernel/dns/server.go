package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/shoalhq/shoal/sdk"
)

// Config is a node's DNS server.
type Config struct {
	// Addrs are the addresses to listen on from the start, each over UDP
	// and TCP, as host:port: on a node, the gateway address of each
	// network's bridge that has tasks on the node, port 53. Port 0 picks a
	// free port, the same for UDP and TCP (Server.Addrs tells which).
	// Optional: Server.SetAddrs changes them at any time. At most 1,024
	// (maxAddrs).
	Addrs []string
	// ResolvConf is the host's resolver configuration, read at New and
	// again when it changes. Default: DefaultResolvConf.
	ResolvConf string
	// Upstream, when set, is used instead of reading ResolvConf.
	Upstream *HostConfig
	// ForwardTimeout bounds a forwarded query, all its tries included, so
	// that a task's resolver gets SERVFAIL before its own timeout. Default:
	// the host's per-try timeout (options timeout:N, 5 s by default).
	ForwardTimeout time.Duration
	// MaxForwards bounds the forwarded queries in flight; past it a query
	// to forward gets SERVFAIL at once. Default: 256.
	MaxForwards int
	// MaxTCPConns bounds the open TCP connections per address; a
	// connection past it is closed at once. Default: 64.
	MaxTCPConns int
}

// Bounds on queries and answers.
const (
	// maxQuerySize bounds a query, over UDP and TCP: a question of 255
	// bytes and an OPT record with a cookie take about 300.
	maxQuerySize = 512
	// maxUDPSize is the largest UDP answer sent (and advertised over EDNS),
	// the size DNS flag day 2020 chose to avoid fragmentation.
	maxUDPSize = 1232
	// maxForwardSize is the largest UDP answer read from an upstream;
	// larger ones are truncated there and asked again over TCP (at most
	// 64 KiB, the protocol's bound).
	maxForwardSize = 4096
	// ttl of the cluster's records: none, so that a task that dies or fails
	// its health check leaves the answers at once, resolver caches
	// included.
	ttl = 0
	// hostConfigPoll is how often ResolvConf is checked for changes.
	hostConfigPoll = 5 * time.Second
	// maxAddrs bounds the addresses listened on: a node has one per
	// network with tasks on it, far fewer than this; each costs two
	// sockets, two goroutines and up to MaxTCPConns connections.
	maxAddrs = 1024
)

// Server is a node's DNS server: it answers the cluster's names from an
// Index, for each querying task only with the names of its own networks,
// and forwards the others to the host's resolvers.
type Server struct {
	ix   *Index
	log  *slog.Logger
	cfg  Config
	host atomic.Pointer[HostConfig] // rawHost without our own addresses

	// hostMu orders the updates of host, from a new rawHost (the watcher
	// of ResolvConf) or a new self (SetAddrs), so that none is lost.
	hostMu  sync.Mutex
	rawHost HostConfig      // as read, our own addresses included
	self    map[string]bool // our own addresses, never forwarded to

	fwdSem    chan struct{}
	fwdCtx    context.Context // every forward's; each listener's derives from it
	fwdCancel context.CancelFunc

	// mu serializes SetAddrs, Close and Run's start and stop, and guards
	// what follows. It is not taken by queries.
	mu        sync.Mutex
	state     serverState
	listeners []*listener        // in the order of the last SetAddrs
	runCancel context.CancelFunc // Run's context, set before Run starts a goroutine
	wg        sync.WaitGroup     // Run's goroutines
	addrs     atomic.Pointer[[]string]

	errMu sync.Mutex
	errs  []error // of the servers that failed while Run ran
}

type serverState int

const (
	stateNew     serverState = iota // listeners bound, not served yet
	stateRunning                    // Run serves them
	stateStopped                    // Run is returning or returned
	stateClosed                     // Close was called before Run
)

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

// New returns a server answering from ix, listening on cfg.Addrs (bound
// here, so that an address in use fails now). Run serves them and those
// SetAddrs adds; a server whose Run is never called must be closed with
// Close.
func New(cfg Config, ix *Index, logger *slog.Logger) (*Server, error) {
	var fe sdk.FieldErrors
	if len(cfg.Addrs) > maxAddrs {
		fe.Add("addrs", "at most %d addresses, got %d", maxAddrs, len(cfg.Addrs))
	}
	if ix == nil {
		fe.Add("index", "is required")
	}
	if cfg.ForwardTimeout < 0 {
		fe.Add("forward_timeout", "must not be negative, got %s", cfg.ForwardTimeout)
	}
	if cfg.MaxForwards < 0 {
		fe.Add("max_forwards", "must not be negative, got %d", cfg.MaxForwards)
	}
	if cfg.MaxTCPConns < 0 {
		fe.Add("max_tcp_conns", "must not be negative, got %d", cfg.MaxTCPConns)
	}
	if err := fe.Err(); err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = DefaultResolvConf
	}
	if cfg.MaxForwards == 0 {
		cfg.MaxForwards = 256
	}
	if cfg.MaxTCPConns == 0 {
		cfg.MaxTCPConns = 64
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	host := cfg.Upstream
	if host == nil {
		hc, err := ReadHostConfig(cfg.ResolvConf)
		if err != nil {
			return nil, fmt.Errorf("dns: %w", err)
		}
		host = &hc
	}

	s := &Server{ix: ix, log: logger, cfg: cfg, fwdSem: make(chan struct{}, cfg.MaxForwards)}
	s.fwdCtx, s.fwdCancel = context.WithCancel(context.Background())
	s.setHost(*host)
	s.mu.Lock()
	err := s.setAddrs(cfg.Addrs)
	s.mu.Unlock()
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

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

// Addrs returns the addresses listened on (UDP and TCP each), as bound
// (port 0 resolved), in the order SetAddrs (or Config.Addrs) gave them.
func (s *Server) Addrs() []string {
	if p := s.addrs.Load(); p != nil {
		return slices.Clone(*p)
	}
	return nil
}

// Host returns the host's resolver configuration in use: what a task's
// resolv.conf copies (ResolvConf).
func (s *Server) Host() HostConfig { return *s.host.Load() }

// setHost makes hc, without our own addresses, the host's configuration
// in use.
func (s *Server) setHost(hc HostConfig) {
	s.hostMu.Lock()
	defer s.hostMu.Unlock()
	s.rawHost = hc
	s.filterHost(true)
}

// filterHost stores rawHost without self; s.hostMu is held. When only
// self changed, nothing is stored (or logged) unless the nameservers in
// use change.
func (s *Server) filterHost(newHost bool) {
	hc := s.rawHost
	var servers []string
	for _, a := range hc.Servers {
		if !s.self[a] {
			servers = append(servers, a)
		}
	}
	if old := s.host.Load(); !newHost && (old == nil || slices.Equal(old.Servers, servers)) {
		return
	}
	for _, a := range hc.Servers {
		if s.self[a] {
			s.log.Warn("the host's resolv.conf names this DNS server: not forwarding to it", "nameserver", a)
		}
	}
	hc.Servers = servers
	if len(servers) == 0 {
		s.log.Warn("the host has no nameserver: names that are not the cluster's get SERVFAIL", "resolv_conf", s.cfg.ResolvConf)
	}
	s.host.Store(&hc)
}

// Close closes the listeners of a server whose Run was never called;
// SetAddrs and Run fail after it. Once Run was called it does nothing:
// Run closes them when its context is cancelled.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateNew {
		return nil
	}
	s.state = stateClosed
	s.stopAll(s.listeners)
	s.listeners = nil
	s.publish()
	s.fwdCancel()
	return nil
}

// Run serves DNS on the addresses listened on, and on those SetAddrs adds
// while it runs, until ctx is cancelled; then it stops the forwards in
// flight, closes every address and returns once every goroutine it or
// SetAddrs started (miekg/dns's per-query ones included) has exited. It
// returns an error when a listener fails.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	switch s.state {
	case stateRunning, stateStopped:
		s.mu.Unlock()
		return errors.New("dns: Run called twice")
	case stateClosed:
		s.mu.Unlock()
		return errors.New("dns: Run called after Close")
	}
	s.state = stateRunning
	s.runCancel = cancel
	for _, ln := range s.listeners {
		s.serve(ln)
	}
	if s.cfg.Upstream == nil {
		s.wg.Go(func() { s.watchHost(ctx) })
	}
	s.mu.Unlock()

	<-ctx.Done()
	s.mu.Lock()
	s.state = stateStopped
	s.fwdCancel()
	s.stopAll(s.listeners)
	s.listeners = nil
	s.publish()
	s.mu.Unlock()
	s.wg.Wait()

	s.errMu.Lock()
	defer s.errMu.Unlock()
	if err := errors.Join(s.errs...); err != nil {
		return fmt.Errorf("dns: serve: %w", err)
	}
	return nil
}

// watchHost reloads ResolvConf when its size or time changes.
func (s *Server) watchHost(ctx context.Context) {
	stamp := func() string {
		st, err := os.Stat(s.cfg.ResolvConf)
		if err != nil {
			return ""
		}
		return fmt.Sprint(st.Size(), st.ModTime().UnixNano())
	}
	last := stamp()
	t := time.NewTicker(hostConfigPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := stamp()
		if cur == last || cur == "" {
			continue
		}
		last = cur
		hc, err := ReadHostConfig(s.cfg.ResolvConf)
		if err != nil {
			s.log.Warn("the host's resolver configuration changed but cannot be read: keeping the old one", "error", err)
			continue
		}
		s.setHost(hc)
		s.log.Info("the host's resolver configuration changed", "nameservers", hc.Servers, "search", hc.Search)
	}
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

// ServeDNS answers one query: the first question only.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) { s.serveDNS(s.fwdCtx, w, r) }

// handler answers the queries of one listener, whose forwards end with
// ctx: when the listener is removed.
type handler struct {
	s   *Server
	ctx context.Context
}

func (h handler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) { h.s.serveDNS(h.ctx, w, r) }

func (s *Server) serveDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) {
	resp := s.answer(ctx, w, r)
	if resp == nil {
		return
	}
	s.write(w, r, resp)
}

func (s *Server) answer(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
	resp := new(dns.Msg)
	if len(r.Question) == 0 {
		return resp.SetRcodeFormatError(r)
	}
	resp.SetReply(r)
	resp.RecursionAvailable = true
	q := r.Question[0]
	if len(q.Name) > 255 {
		return resp.SetRcodeFormatError(r)
	}
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		return resp.SetRcode(r, dns.RcodeRefused)
	}
	client := remoteAddr(w)
	name := lower(q.Name)

	var buf [16]netip.Addr
	addrs, res := s.ix.lookup(client, name, buf[:0])
	if res == unknown {
		// A resolver appending the host's search domain to one of ours:
		// redis.example.com is redis when example.com is a search domain
		// and redis is on the client's networks.
		for _, d := range s.host.Load().Search {
			if short, ok := strings.CutSuffix(name, "."+d); ok {
				if a, sr := s.ix.lookup(client, short, buf[:0]); sr == found {
					addrs, res = a, found
					break
				}
			}
		}
	}
	switch {
	case res == found:
		resp.Authoritative = true
		rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
		if fit := maxUDPSize / 16; len(addrs) > fit && isUDP(w) {
			// No more than this fits (an A record takes 16 bytes,
			// compressed): do not build records to drop them.
			addrs = addrs[:fit]
			resp.Truncated = true
		}
		for _, a := range addrs {
			hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: ttl}
			switch {
			case a.Is4() && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY):
				hdr.Rrtype = dns.TypeA
				resp.Answer = append(resp.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
			case a.Is6() && (q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY):
				hdr.Rrtype = dns.TypeAAAA
				resp.Answer = append(resp.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
			}
		}
		return resp
	case res == elsewhere || name != "" && !strings.Contains(name, "."):
		// Another network's name, or a single label: never asked of the
		// host's resolvers.
		resp.Authoritative = true
		return resp.SetRcode(r, dns.RcodeNameError)
	case q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR:
		return resp.SetRcode(r, dns.RcodeRefused)
	}
	if f := s.forward(ctx, r, q); f != nil {
		return f
	}
	return resp.SetRcode(r, dns.RcodeServerFailure)
}

// forward asks the host's resolvers as the C library does, each in turn,
// Attempts rounds, within ForwardTimeout for all the tries: each try gets
// an equal part of it. An answer other than SERVFAIL, REFUSED or NOTIMP
// ends the tries, and so does ctx. It returns nil when no answer came.
func (s *Server) forward(ctx context.Context, r *dns.Msg, q dns.Question) *dns.Msg {
	select {
	case s.fwdSem <- struct{}{}:
		defer func() { <-s.fwdSem }()
	default:
		s.log.Debug("too many forwarded queries in flight: SERVFAIL", "name", q.Name)
		return nil
	}
	host := s.host.Load()
	if len(host.Servers) == 0 {
		return nil
	}
	budget := s.cfg.ForwardTimeout
	if budget == 0 {
		budget = host.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	tries := max(1, host.Attempts) * len(host.Servers)
	per := budget / time.Duration(tries)

	m := new(dns.Msg)
	m.SetQuestion(q.Name, q.Qtype)
	m.Question[0].Qclass = q.Qclass
	m.RecursionDesired = r.RecursionDesired
	m.CheckingDisabled = r.CheckingDisabled
	do := false
	if opt := r.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	m.SetEdns0(maxForwardSize, do)

	var last *dns.Msg
asking:
	for i := 0; i < tries && ctx.Err() == nil; i++ {
		srv := host.Servers[i%len(host.Servers)]
		resp, err := exchange(ctx, per, m, srv)
		if err != nil {
			s.log.Debug("forward failed", "name", q.Name, "nameserver", srv, "error", err)
			continue
		}
		last = resp
		switch resp.Rcode {
		case dns.RcodeServerFailure, dns.RcodeRefused, dns.RcodeNotImplemented:
			continue
		}
		break asking
	}
	if last == nil {
		return nil
	}
	last.Id = r.Id
	last.Question = []dns.Question{q}
	last.Extra = stripOPT(last.Extra)
	return last
}

// exchange sends m to srv over UDP, and again over TCP when the answer is
// truncated, within per and ctx.
func exchange(ctx context.Context, per time.Duration, m *dns.Msg, srv string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, per)
	defer cancel()
	m.Id = dns.Id()
	resp, err := exchangeOver(ctx, "udp", m, srv)
	if err == nil && resp.Truncated {
		m.Id = dns.Id()
		resp, err = exchangeOver(ctx, "tcp", m, srv)
	}
	if err != nil {
		return nil, err
	}
	if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, m.Question[0].Name) ||
		resp.Question[0].Qtype != m.Question[0].Qtype {
		return nil, errors.New("answer to another question")
	}
	return resp, nil
}

func exchangeOver(ctx context.Context, network string, m *dns.Msg, srv string) (*dns.Msg, error) {
	c := &dns.Client{Net: network, UDPSize: maxForwardSize}
	if dl, ok := ctx.Deadline(); ok {
		// miekg/dns cuts each read at its own 2 s default otherwise,
		// whatever the try's share of the forward timeout.
		c.Timeout = time.Until(dl)
	}
	co, err := c.DialContext(ctx, srv)
	if err != nil {
		return nil, err
	}
	defer co.Close()
	// Cancelling ctx (Run stopping) interrupts the read at once.
	stop := context.AfterFunc(ctx, func() { co.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	resp, _, err := c.ExchangeWithConnContext(ctx, m, co)
	return resp, err
}

func stripOPT(rrs []dns.RR) []dns.RR {
	out := rrs[:0]
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			out = append(out, rr)
		}
	}
	return out
}

// write sends resp, with an OPT record when the query had one, truncated to
// what the client takes over UDP (512 bytes, or its EDNS size up to
// maxUDPSize) so that it asks again over TCP.
func (s *Server) write(w dns.ResponseWriter, r, resp *dns.Msg) {
	size := dns.MaxMsgSize
	udp := isUDP(w)
	if udp {
		size = dns.MinMsgSize
	}
	if opt := r.IsEdns0(); opt != nil {
		resp.SetEdns0(maxUDPSize, false)
		if udp {
			size = min(max(int(opt.UDPSize()), dns.MinMsgSize), maxUDPSize)
		}
	}
	resp.Truncate(size)
	if err := w.WriteMsg(resp); err != nil {
		s.log.Debug("write answer", "error", err)
	}
}

func isUDP(w dns.ResponseWriter) bool {
	_, ok := w.LocalAddr().(*net.UDPAddr)
	return ok
}

func remoteAddr(w dns.ResponseWriter) netip.Addr {
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}
