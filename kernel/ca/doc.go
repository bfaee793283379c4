// Package ca is shoal's certificate authority and the mutual TLS built on it.
//
// Trust model:
//   - The first manager creates the cluster's root CA (NewRootCA). Its key is
//     stored in the replicated store, so any manager can sign (Signer).
//   - A join token ("SHL1-<root digest>-<secret>") does two things: the digest
//     lets a joining node pin the root CA before it trusts any server (Join
//     refuses a server whose chain does not end in that root, before the secret
//     is sent), and the secret proves to the manager that the node may join,
//     with the role of the token it matches (Server.IssueNodeCertificate).
//   - Every node certificate names the node: CN is the node ID, OU its role
//     ("shoal-manager" or "shoal-worker"), O the cluster ID. Manager
//     certificates also carry the DNS name ManagerServerName, which clients
//     verify, so a worker certificate can never pose as a manager.
//   - An Identity holds a node's key, certificate and root on disk and in
//     memory; its TLS configurations read the current certificate on every
//     handshake, so a renewal (Renewer) takes effect without a restart.
//   - gRPC servers authorize methods by role with a Policy; a method not listed
//     is denied. Calls over the local unix socket are trusted (IsLocal).
//
// Root CA rotation is not supported yet: a node trusts exactly one root.
package ca
