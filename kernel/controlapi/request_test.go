package controlapi

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/shoalhq/shoal/kernel/raftstore"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

// call runs a Control method through the server's interceptor, as gRPC does.
func call[Req, Resp any](t *testing.T, s *Server, ctx context.Context, method string, req Req, h func(context.Context, Req) (Resp, error)) (Resp, error) {
	t.Helper()
	resp, err := s.UnaryInterceptor()(ctx, req, &grpc.UnaryServerInfo{FullMethod: method}, func(ctx context.Context, req any) (any, error) {
		return h(ctx, req.(Req))
	})
	if err != nil {
		var zero Resp
		return zero, err
	}
	return resp.(Resp), nil
}

func TestRetriedWriteTakesEffectOnce(t *testing.T) {
	s, _ := newTestServer(t)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(RequestIDKey, "create-web"))
	spec := validServiceSpec()
	first, err := call(t, s, ctx, controlv1.Control_CreateService_FullMethodName, &controlv1.CreateServiceRequest{Spec: spec}, s.CreateService)
	if err != nil {
		t.Fatal(err)
	}
	// The same call again, as a follower or a client retrying it sends it:
	// it says the service was created, and creates nothing more.
	again, err := call(t, s, ctx, controlv1.Control_CreateService_FullMethodName, &controlv1.CreateServiceRequest{Spec: spec}, s.CreateService)
	if err != nil {
		t.Fatalf("retried CreateService = %v, want the first attempt's answer", err)
	}
	if again.GetService().GetId() != first.GetService().GetId() {
		t.Errorf("retried CreateService answered service %s, want %s", again.GetService().GetId(), first.GetService().GetId())
	}
	// A remove retried after it applied says it removed the service.
	rmCtx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(RequestIDKey, "rm-web"))
	for i := range 2 {
		if _, err := call(t, s, rmCtx, controlv1.Control_RemoveService_FullMethodName, &controlv1.RemoveServiceRequest{Ref: spec.GetAnnotations().GetName()}, s.RemoveService); err != nil {
			t.Fatalf("RemoveService attempt %d = %v, want OK", i+1, err)
		}
	}
	// Without a request ID, a second create is a second call.
	if _, err := call(t, s, context.Background(), controlv1.Control_CreateService_FullMethodName, &controlv1.CreateServiceRequest{Spec: spec}, s.CreateService); err != nil {
		t.Fatal(err)
	}
	_, err = call(t, s, context.Background(), controlv1.Control_CreateService_FullMethodName, &controlv1.CreateServiceRequest{Spec: spec}, s.CreateService)
	if !errors.Is(sdk.FromGRPC(err), sdk.ErrAlreadyExists) {
		t.Errorf("a second create without a request ID = %v, want AlreadyExists", err)
	}
}

// racingRaft removes a service right after each write commits, as a
// concurrent RemoveService may between an update's commit and its answer.
type racingRaft struct {
	*leaderRaft
	remove string
}

func (r *racingRaft) UpdateRequest(ctx context.Context, id string, fn func(*state.Tx) error) (raftstore.Write, error) {
	w, err := r.leaderRaft.UpdateRequest(ctx, id, fn)
	if err == nil && r.remove != "" {
		if rerr := r.leaderRaft.Update(ctx, func(tx *state.Tx) error { return tx.DeleteService(r.remove) }); rerr != nil {
			return w, rerr
		}
	}
	return w, err
}

func TestUpdateAnswersWhatItWrote(t *testing.T) {
	lr := &leaderRaft{st: state.New()}
	r := &racingRaft{leaderRaft: lr}
	s := NewServer(r, lr.st, nil, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	created, err := s.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: validServiceSpec()})
	if err != nil {
		t.Fatal(err)
	}
	spec := validServiceSpec()
	spec.GetTask().GetContainer().Image = "example.com/other:2"
	r.remove = created.GetService().GetId()
	resp, err := s.UpdateService(ctx, &controlv1.UpdateServiceRequest{Ref: created.GetService().GetId(), Version: created.GetService().GetMeta().GetVersion(), Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.GetService()
	if got == nil || got.GetSpec().GetTask().GetContainer().GetImage() != "example.com/other:2" || got.GetMeta().GetVersion() <= created.GetService().GetMeta().GetVersion() {
		t.Fatalf("UpdateService of a service removed right after = %v, want the service as updated, at a newer version", got)
	}
	if got.GetSpecVersion() != 2 || got.GetPreviousSpec() == nil {
		t.Errorf("UpdateService answered spec_version %d (previous spec set: %v), want 2 with the previous spec", got.GetSpecVersion(), got.GetPreviousSpec() != nil)
	}
}

func TestLongRefRefused(t *testing.T) {
	s, _ := newTestServer(t)
	ref := strings.Repeat("x", maxRefLen+1)
	_, err := call(t, s, context.Background(), controlv1.Control_GetService_FullMethodName, &controlv1.GetServiceRequest{Ref: ref}, s.GetService)
	if !errors.Is(sdk.FromGRPC(err), sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "ref: must be at most 256 bytes, got 257") {
		t.Errorf("GetService(a 257-byte ref) = %v, want InvalidArgument naming ref and the limit", err)
	}
	_, err = call(t, s, context.Background(), controlv1.Control_GetService_FullMethodName, &controlv1.GetServiceRequest{Ref: ref[:maxRefLen]}, s.GetService)
	if !errors.Is(sdk.FromGRPC(err), sdk.ErrNotFound) {
		t.Errorf("GetService(a 256-byte ref) = %v, want NotFound", err)
	}
}
