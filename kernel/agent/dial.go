package agent

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/sdk"
)

// connCache keeps one client connection per manager address, so that a
// worker going back to a manager reuses its connection, and certificate
// renewal shares the session's.
type connCache struct {
	id *ca.Identity

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
}

func newConnCache(id *ca.Identity) *connCache {
	return &connCache{id: id, conns: map[string]*grpc.ClientConn{}}
}

// get returns the connection to addr, creating it (without connecting: the
// first call connects) when there is none.
func (c *connCache) get(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("dial manager: agent stopped")
	}
	if conn, ok := c.conns[addr]; ok {
		return conn, nil
	}
	conn, err := dialManager(addr, c.id)
	if err != nil {
		return nil, fmt.Errorf("dial manager %s: %w", addr, err)
	}
	c.conns[addr] = conn
	return conn, nil
}

// prune closes the connections to addresses not in keep: managers that
// left the cluster.
func (c *connCache) prune(keep []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for addr, conn := range c.conns {
		if !slices.Contains(keep, addr) {
			conn.Close()
			delete(c.conns, addr)
		}
	}
}

// closeAll closes every connection; get fails afterwards.
func (c *connCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for addr, conn := range c.conns {
		conn.Close()
		delete(c.conns, addr)
	}
	c.closed = true
}

// dialManager makes a client connection to a manager's API over mutual TLS:
// the node's certificate, and a server that must hold a manager certificate
// of the cluster's root (ca.Identity.ClientTLS). gRPC's own reconnects back
// off from 100ms to 2s, like the managers' connections to each other; the
// agent's choice of manager has its own backoff on top.
func dialManager(addr string, id *ca.Identity) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr,
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(sdk.MaxMessageBytes)),
		grpc.WithTransportCredentials(credentials.NewTLS(id.ClientTLS())),
		// A manager cut off without closing the connection is noticed in
		// about 15 s (managers accept a ping every 5 s or more).
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 2 * time.Second,
		}),
	)
}
