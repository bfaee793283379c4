package ca

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/shoalhq/shoal/internal/retry"
	"github.com/shoalhq/shoal/sdk"
	cav1 "github.com/shoalhq/shoal/sdk/proto/shoal/ca/v1"
)

const (
	// A certificate is renewed at a random point between renewFrom and
	// renewTo of its validity: at most half of it is left, nodes that joined
	// together do not renew together, and a quarter of the validity is left
	// for retries if the managers are unreachable.
	renewFrom = 0.50
	renewTo   = 0.75
	// Retries start at renewMinBackoff and double up to renewMaxBackoff:
	// quick enough to ride out a leader election, slow enough not to load
	// managers that are down.
	renewMinBackoff = time.Second
	renewMaxBackoff = time.Minute
	// renewTimeout bounds one renewal call.
	renewTimeout = 30 * time.Second
)

// Renewer keeps a node's certificate fresh.
type Renewer struct {
	id     *Identity
	client func(ctx context.Context) (cav1.NodeCAClient, error)
	logger *slog.Logger
}

// NewRenewer returns a Renewer of id's certificate. client returns a NodeCA
// client on a connection to a manager (made with id.ClientTLS()); the caller
// owns that connection.
func NewRenewer(id *Identity, client func(ctx context.Context) (cav1.NodeCAClient, error), logger *slog.Logger) *Renewer {
	return &Renewer{id: id, client: client, logger: logger}
}

// Run renews the certificate, with a new key each time, when at most half of
// its validity is left, and retries failures with exponential backoff. The
// new certificate may carry a new role (a promotion or demotion):
// Identity.Changed tells. Run returns nil when ctx is cancelled, and an
// error when renewing cannot succeed: the node was removed from the
// cluster, or its certificate expired (it must join again).
func (r *Renewer) Run(ctx context.Context) error {
	for {
		if !retry.Sleep(ctx, time.Until(renewalTime(r.id.validity()))) {
			return nil
		}
		backoff := renewMinBackoff
		for {
			err := r.renew(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, sdk.ErrPermissionDenied) {
				return fmt.Errorf("renew certificate: %w", err)
			}
			if notAfter := r.id.NotAfter(); time.Now().After(notAfter) {
				return fmt.Errorf("renew certificate: certificate expired at %s, join the cluster again: %w (last error: %w)",
					notAfter.Format(time.RFC3339), sdk.ErrFailedPrecondition, err)
			}
			wait := backoff/2 + rand.N(backoff/2+1)
			r.logger.Warn("certificate renewal failed", "node_id", r.id.NodeID(), "error", err, "retry_in", wait)
			if !retry.Sleep(ctx, wait) {
				return nil
			}
			backoff = min(2*backoff, renewMaxBackoff)
		}
	}
}

// renew gets and installs a certificate for a new key.
func (r *Renewer) renew(ctx context.Context) error {
	keyPEM, err := NewKey()
	if err != nil {
		return err
	}
	csrPEM, err := NewCSR(keyPEM)
	if err != nil {
		return err
	}
	client, err := r.client(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, renewTimeout)
	defer cancel()
	resp, err := client.RenewNodeCertificate(ctx, &cav1.RenewNodeCertificateRequest{Csr: csrPEM})
	if err != nil {
		return sdk.FromGRPC(err)
	}
	before := r.id.Role()
	if err := r.id.Renewed(keyPEM, resp.GetCertificatePem()); err != nil {
		return err
	}
	after := r.id.Role()
	if after != before {
		r.logger.Info("node role changed", "node_id", r.id.NodeID(), "from", roleName(before), "to", roleName(after))
	}
	r.logger.Info("certificate renewed", "node_id", r.id.NodeID(), "role", roleName(after), "not_after", r.id.NotAfter())
	return nil
}

// renewalTime picks when to renew a certificate valid from notBefore to
// notAfter. Validity is counted from the issue time, notBefore+Backdate, so
// that the backdating does not eat into a short lifetime.
func renewalTime(notBefore, notAfter time.Time) time.Time {
	issued := notBefore.Add(Backdate)
	if !issued.Before(notAfter) {
		issued = notBefore
	}
	validity := notAfter.Sub(issued)
	frac := renewFrom + rand.Float64()*(renewTo-renewFrom)
	return issued.Add(time.Duration(float64(validity) * frac))
}

// validity is the current certificate's validity period.
func (id *Identity) validity() (notBefore, notAfter time.Time) {
	leaf := id.current().Leaf
	return leaf.NotBefore, leaf.NotAfter
}
