package ca

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"strings"
	"testing"
	"time"
)

// handshake connects a client to a server over 127.0.0.1 and reports each
// side's error. The client reads a byte the server writes after its
// handshake: in TLS 1.3 the client finishes first, and learns that the
// server refused its certificate only on that read.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error, serverSaw *x509.Certificate) {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	type result struct {
		err  error
		peer *x509.Certificate
	}
	done := make(chan result, 1)
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer conn.Close()
		tc := conn.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			done <- result{err: err}
			return
		}
		var peer *x509.Certificate
		if pc := tc.ConnectionState().PeerCertificates; len(pc) > 0 {
			peer = pc[0]
		}
		_, err = conn.Write([]byte{1})
		done <- result{err: err, peer: peer}
	}()
	conn, err := tls.Dial("tcp", lis.Addr().String(), client)
	if err == nil {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = io.ReadFull(conn, make([]byte, 1))
		conn.Close()
	}
	r := <-done
	return r.err, err, r.peer
}

// noCertClient trusts the root but presents no certificate, as a joining
// node does.
func noCertClient(id *Identity) *tls.Config {
	return &tls.Config{RootCAs: id.roots, ServerName: ManagerServerName, MinVersion: tls.VersionTLS13}
}

// foreignClient presents a certificate of another CA but trusts this
// cluster's root, so only the server's check can stop it.
func foreignClient(id, foreign *Identity) *tls.Config {
	cfg := noCertClient(id)
	cfg.Certificates = []tls.Certificate{*foreign.current()}
	return cfg
}

func TestTLS(t *testing.T) {
	reg := newFakeRegistrar(t, "cluster-1", time.Hour)
	mgr := newTestIdentity(t, reg.root, "cluster-1", "manager-1", manager, time.Hour)
	mgr2 := newTestIdentity(t, reg.root, "cluster-1", "manager-2", manager, time.Hour)
	wrk := newTestIdentity(t, reg.root, "cluster-1", "worker-1", worker, time.Hour)
	other := newFakeRegistrar(t, "cluster-2", time.Hour)
	foreignMgr := newTestIdentity(t, other.root, "cluster-2", "manager-9", manager, time.Hour)
	mutualServer, _ := mgr.MutualTLS()
	_, mutualClient2 := mgr2.MutualTLS()
	_, workerMutualClient := wrk.MutualTLS()
	_, foreignMutualClient := foreignMgr.MutualTLS()
	tests := []struct {
		name           string
		server, client *tls.Config
		wantErr        string // in either side's error; "" for success
		wantPeer       string // the client node the server saw
	}{
		{"api: worker client", mgr.ServerTLS(), wrk.ClientTLS(), "", "worker-1"},
		{"api: manager client", mgr.ServerTLS(), mgr2.ClientTLS(), "", "manager-2"},
		{"api: client without certificate", mgr.ServerTLS(), noCertClient(mgr), "", ""},
		{"api: client of another CA", mgr.ServerTLS(), foreignClient(mgr, foreignMgr), "unknown certificate authority", ""},
		{"api: server is a worker", wrk.ServerTLS(), wrk.ClientTLS(), "not valid for any names, but wanted to match shoal-manager", ""},
		{"api: server of another CA", foreignMgr.ServerTLS(), wrk.ClientTLS(), "certificate signed by unknown authority", ""},
		{"raft: managers", mutualServer, mutualClient2, "", "manager-2"},
		{"raft: worker client", mutualServer, workerMutualClient, "peer worker-1 is a worker, want a manager", ""},
		{"raft: client of another CA", mutualServer, foreignClient(mgr, foreignMgr), "unknown certificate authority", ""},
		{"raft: client without certificate", mutualServer, noCertClient(mgr), "client didn't provide a certificate", ""},
		{"raft: server of another CA", func() *tls.Config { s, _ := foreignMgr.MutualTLS(); return s }(), mutualClient2, "certificate signed by unknown authority", ""},
		// A foreign manager's own configuration does not trust this root.
		{"raft: foreign manager client", mutualServer, foreignMutualClient, "certificate signed by unknown authority", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serverErr, clientErr, peer := handshake(t, tt.server, tt.client)
			if tt.wantErr == "" {
				if serverErr != nil || clientErr != nil {
					t.Fatalf("handshake: server error %v, client error %v, want success", serverErr, clientErr)
				}
				got := ""
				if peer != nil {
					got = peer.Subject.CommonName
				}
				if got != tt.wantPeer {
					t.Errorf("server saw client %q, want %q", got, tt.wantPeer)
				}
				return
			}
			if serverErr == nil || clientErr == nil {
				t.Fatalf("handshake: server error %v, client error %v, want both to fail", serverErr, clientErr)
			}
			if !strings.Contains(serverErr.Error()+" | "+clientErr.Error(), tt.wantErr) {
				t.Errorf("handshake errors %q | %q, want one containing %q", serverErr, clientErr, tt.wantErr)
			}
		})
	}
}

// TestServerTLSPresentsRenewedCertificate checks that a renewal applies to
// the next handshake of a configuration made before it.
func TestServerTLSPresentsRenewedCertificate(t *testing.T) {
	reg := newFakeRegistrar(t, "cluster-1", time.Hour)
	mgr := newTestIdentity(t, reg.root, "cluster-1", "manager-1", manager, time.Hour)
	wrk := newTestIdentity(t, reg.root, "cluster-1", "worker-1", worker, time.Hour)
	server, client := mgr.ServerTLS(), wrk.ClientTLS()
	serials := func() (serverSerial, clientSerial string) {
		var seen *x509.Certificate
		c := client.Clone()
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			seen = cs.PeerCertificates[0]
			return nil
		}
		serr, cerr, peer := handshake(t, server, c)
		if serr != nil || cerr != nil {
			t.Fatalf("handshake: server error %v, client error %v", serr, cerr)
		}
		return seen.SerialNumber.String(), peer.SerialNumber.String()
	}
	s1, c1 := serials()
	keyPEM, certPEM := signTest(t, reg.root, "cluster-1", "manager-1", manager, time.Now(), 2*time.Hour)
	if err := mgr.Renewed(keyPEM, certPEM); err != nil {
		t.Fatal(err)
	}
	keyPEM, certPEM = signTest(t, reg.root, "cluster-1", "worker-1", worker, time.Now(), 2*time.Hour)
	if err := wrk.Renewed(keyPEM, certPEM); err != nil {
		t.Fatal(err)
	}
	s2, c2 := serials()
	if s1 == s2 {
		t.Errorf("server certificate serial after renewal = %s, want a new one", s2)
	}
	if c1 == c2 {
		t.Errorf("client certificate serial after renewal = %s, want a new one", c2)
	}
}
