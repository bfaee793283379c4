package ca

import (
	"crypto/tls"
	"errors"
	"fmt"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// All of shoal's TLS is TLS 1.3: every party is shoal, so there is no older
// client to serve, and 1.3 encrypts the certificates exchanged.
const minTLSVersion = tls.VersionTLS13

// ServerTLS is the configuration of a manager's API server. It presents the
// current certificate (a renewal applies to the next handshake) and verifies
// a client certificate against the root when one is given. Clients without
// one are let through because joining nodes have none yet: a Policy decides
// per method who may call it.
func (id *Identity) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion:       minTLSVersion,
		GetCertificate:   id.getCertificate,
		ClientAuth:       tls.VerifyClientCertIfGiven,
		ClientCAs:        id.roots,
		VerifyConnection: id.verifyPeer(false),
	}
}

// ClientTLS is the configuration of a node calling a manager. It presents
// the current certificate and accepts only a server whose certificate chains
// to the root and is a manager's.
func (id *Identity) ClientTLS() *tls.Config {
	return &tls.Config{
		MinVersion:           minTLSVersion,
		GetClientCertificate: id.getClientCertificate,
		RootCAs:              id.roots,
		ServerName:           ManagerServerName,
		VerifyConnection:     id.verifyPeer(true),
	}
}

// MutualTLS are the configurations of the managers' Raft transport: each
// side must present a manager certificate of this cluster's root.
func (id *Identity) MutualTLS() (server, client *tls.Config) {
	server = &tls.Config{
		MinVersion:       minTLSVersion,
		GetCertificate:   id.getCertificate,
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        id.roots,
		VerifyConnection: id.verifyPeer(true),
	}
	return server, id.ClientTLS()
}

func (id *Identity) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return id.current(), nil
}

func (id *Identity) getClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return id.current(), nil
}

// verifyPeer runs after the chain is verified. The root already ties the
// peer to this cluster; checking the names too refuses a certificate of the
// root that does not name a node of this cluster.
func (id *Identity) verifyPeer(manager bool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			if manager {
				return errors.New("peer presented no certificate, want a manager certificate")
			}
			return nil
		}
		names, err := namesOf(cs.PeerCertificates[0])
		if err != nil {
			return fmt.Errorf("peer: %w", err)
		}
		if names.clusterID != id.clusterID {
			return fmt.Errorf("peer %s is in cluster %s, want %s", names.nodeID, names.clusterID, id.clusterID)
		}
		if manager && names.role != objectv1.NodeRole_NODE_ROLE_MANAGER {
			return fmt.Errorf("peer %s is a %s, want a manager", names.nodeID, roleName(names.role))
		}
		return nil
	}
}
