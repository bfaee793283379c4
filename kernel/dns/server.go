package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

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

const (
	stateNew     serverState = iota // listeners bound, not served yet
	stateRunning                    // Run serves them
	stateStopped                    // Run is returning or returned
	stateClosed                     // Close was called before Run
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

// Addrs returns the addresses listened on (UDP and TCP each), as bound
// (port 0 resolved), in the order SetAddrs (or Config.Addrs) gave them.
func (s *Server) Addrs() []string {
	if p := s.addrs.Load(); p != nil {
		return slices.Clone(*p)
	}
	return nil
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
