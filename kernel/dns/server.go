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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/shoalhq/shoal/sdk"
)

// Config is a node's DNS server.
type Config struct {
	// Addrs are the addresses to listen on, each over UDP and TCP, as
	// host:port: on a node, the gateway address of each network's bridge,
	// port 53. Port 0 picks a free port, the same for UDP and TCP
	// (Server.Addrs tells which). At least one is required.
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
)

// Server is a node's DNS server: it answers the cluster's names from an
// Index, for each querying task only with the names of its own networks,
// and forwards the others to the host's resolvers.
type Server struct {
	ix      *Index
	log     *slog.Logger
	cfg     Config
	host    atomic.Pointer[HostConfig]
	self    map[string]bool // our own addresses, never forwarded to
	servers []*dns.Server
	addrs   []string

	fwdSem    chan struct{}
	fwdCtx    context.Context
	fwdCancel context.CancelFunc

	ran       atomic.Bool
	closeOnce sync.Once
}

// New returns a server answering from ix, listening on cfg.Addrs (bound
// here, so that an address in use fails now). Run serves them; a server
// whose Run is never called must be closed with Close.
func New(cfg Config, ix *Index, logger *slog.Logger) (*Server, error) {
	var fe sdk.FieldErrors
	if len(cfg.Addrs) == 0 {
		fe.Add("addrs", "at least one address is required")
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
	s := &Server{ix: ix, log: logger, cfg: cfg, self: map[string]bool{}, fwdSem: make(chan struct{}, cfg.MaxForwards)}
	s.fwdCtx, s.fwdCancel = context.WithCancel(context.Background())

	host := cfg.Upstream
	if host == nil {
		hc, err := ReadHostConfig(cfg.ResolvConf)
		if err != nil {
			return nil, fmt.Errorf("dns: %w", err)
		}
		host = &hc
	}

	for _, a := range cfg.Addrs {
		pc, l, err := listen(a)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("dns: listen on %s: %w", a, err)
		}
		s.addrs = append(s.addrs, pc.LocalAddr().String())
		s.self[pc.LocalAddr().String()] = true
		s.servers = append(s.servers,
			s.newServer(&dns.Server{PacketConn: pc}),
			s.newServer(&dns.Server{Listener: &limitListener{Listener: l, sem: make(chan struct{}, cfg.MaxTCPConns)}}))
	}
	s.setHost(*host)
	return s, nil
}

func (s *Server) newServer(srv *dns.Server) *dns.Server {
	srv.Handler = s
	srv.UDPSize = maxQuerySize
	srv.ReadTimeout = 2 * time.Second
	srv.WriteTimeout = 2 * time.Second
	srv.IdleTimeout = func() time.Duration { return 8 * time.Second }
	srv.MaxTCPQueries = 128
	srv.MsgAcceptFunc = acceptQuery
	srv.DecorateReader = func(r dns.Reader) dns.Reader { return sizeReader{r.(dns.PacketConnReader)} }
	return srv
}

// listen binds addr over UDP and TCP, on the same port.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	var lastErr error
	for range 10 {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		p := port
		if p == "0" {
			p = strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, p))
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

// Addrs returns the addresses listened on (UDP and TCP each).
func (s *Server) Addrs() []string { return s.addrs }

// Host returns the host's resolver configuration in use: what a task's
// resolv.conf copies (ResolvConf).
func (s *Server) Host() HostConfig { return *s.host.Load() }

func (s *Server) setHost(hc HostConfig) {
	var servers []string
	for _, a := range hc.Servers {
		if s.self[a] {
			s.log.Warn("the host's resolv.conf names this DNS server: not forwarding to it", "nameserver", a)
			continue
		}
		servers = append(servers, a)
	}
	hc.Servers = servers
	if len(servers) == 0 {
		s.log.Warn("the host has no nameserver: names that are not the cluster's get SERVFAIL", "resolv_conf", s.cfg.ResolvConf)
	}
	s.host.Store(&hc)
}

// Close closes the listeners of a server whose Run was never called.
func (s *Server) Close() error {
	if s.ran.Load() {
		return nil
	}
	s.closeListeners()
	return nil
}

func (s *Server) closeListeners() {
	s.closeOnce.Do(func() {
		for _, srv := range s.servers {
			if srv.PacketConn != nil {
				srv.PacketConn.Close()
			}
			if srv.Listener != nil {
				srv.Listener.Close()
			}
		}
	})
}

// Run serves DNS until ctx is cancelled, then stops the forwards in flight
// and returns once every goroutine it started (miekg/dns's per-query ones
// included) has exited. It returns an error when a listener fails.
func (s *Server) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("dns: Run called twice")
	}
	defer s.closeListeners()
	defer s.fwdCancel()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	errs := make([]error, len(s.servers))
	started := make([]chan struct{}, len(s.servers))
	done := make([]chan struct{}, len(s.servers))
	for i, srv := range s.servers {
		started[i], done[i] = make(chan struct{}), make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started[i]) }
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[i])
			if err := srv.ActivateAndServe(); err != nil {
				errs[i] = err
				cancel()
			}
		}()
	}
	if s.cfg.Upstream == nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.watchHost(ctx)
		}()
	}

	<-ctx.Done()
	s.fwdCancel()
	for i, srv := range s.servers {
		select {
		case <-started[i]:
			srv.Shutdown()
		case <-done[i]:
		}
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
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
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	resp := s.answer(w, r)
	if resp == nil {
		return
	}
	s.write(w, r, resp)
}

func (s *Server) answer(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
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
	if f := s.forward(r, q); f != nil {
		return f
	}
	return resp.SetRcode(r, dns.RcodeServerFailure)
}

// forward asks the host's resolvers as the C library does, each in turn,
// Attempts rounds, within ForwardTimeout for all the tries: each try gets
// an equal part of it. An answer other than SERVFAIL, REFUSED or NOTIMP
// ends the tries. It returns nil when no answer came.
func (s *Server) forward(r *dns.Msg, q dns.Question) *dns.Msg {
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
	ctx, cancel := context.WithTimeout(s.fwdCtx, budget)
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
