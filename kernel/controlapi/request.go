package controlapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/shoalhq/shoal/kernel/ids"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

// RequestIDKey is the metadata key that names a call. A write made twice
// with the same request ID takes effect at most once, and the second
// answer is the first attempt's result: a client may retry a write whose
// answer it did not get. The first manager that receives a call without one
// gives it one, so that a follower forwarding the call again to a new
// leader, or a leader sending it on after losing its leadership, cannot
// apply it twice. IDs are remembered for the last state.MaxRequests writes.
const RequestIDKey = "shoal-request-id"

// maxRequestIDLen bounds a client's request ID.
const maxRequestIDLen = 128

// maxLeaderRetries bounds how often one call is made again after the
// leader it reached lost its leadership: once per election it lived
// through, and an election takes about a second.
const maxLeaderRetries = 5

// callState is what one call's attempts tell the interceptor.
type callState struct {
	// retry is set when an attempt failed because the leader it reached
	// lost (or had lost) its leadership: another attempt reaches the next.
	retry atomic.Bool
}

type callStateKey struct{}

// markRetry notes that ctx's call may be made again.
func markRetry(ctx context.Context) {
	if cs, ok := ctx.Value(callStateKey{}).(*callState); ok {
		cs.retry.Store(true)
	}
}

// noteRetry marks ctx's call for another attempt when err says that this
// manager was not, or stopped being, the leader.
func noteRetry(ctx context.Context, err error) {
	if ctx.Err() == nil && errors.Is(err, sdk.ErrUnavailable) {
		markRetry(ctx)
	}
}

// requestID is the call's request ID (set by UnaryInterceptor).
func requestID(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(RequestIDKey); len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

func readLocal(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	return ok && len(md.Get(ReadLocalKey)) > 0
}

func forwardedCall(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	return ok && len(md.Get(forwardedKey)) > 0
}

// UnaryInterceptor gives each control API call a request ID (keeping the
// client's) and makes the call again when the leader serving it lost its
// leadership, until a leader answers: the answer then says what happened,
// never "maybe". Calls of other services pass through.
func (s *Server) UnaryInterceptor() grpc.UnaryServerInterceptor {
	prefix := "/" + controlv1.Control_ServiceDesc.ServiceName + "/"
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !strings.HasPrefix(info.FullMethod, prefix) {
			return handler(ctx, req)
		}
		md, _ := metadata.FromIncomingContext(ctx)
		md = md.Copy()
		switch id := md.Get(RequestIDKey); {
		case len(id) == 0 || id[0] == "":
			md.Set(RequestIDKey, ids.New())
		case len(id[0]) > maxRequestIDLen:
			return nil, sdk.ToGRPC(sdk.FieldErrors{{Field: "metadata " + RequestIDKey, Message: "at most 128 bytes"}})
		}
		if err := checkRef(req); err != nil {
			return nil, sdk.ToGRPC(err)
		}
		ctx = metadata.NewIncomingContext(ctx, md)
		for attempt := 0; ; attempt++ {
			cs := &callState{}
			resp, err := handler(context.WithValue(ctx, callStateKey{}, cs), req)
			// A forwarded call is retried by the manager that forwarded it.
			if err == nil || !cs.retry.Load() || attempt >= maxLeaderRetries || ctx.Err() != nil || forwardedCall(ctx) {
				return resp, err
			}
			s.log.Debug("leader changed during a call; making it again", "method", info.FullMethod, "attempt", attempt+1)
			select {
			case <-ctx.Done():
				return resp, err
			case <-time.After(time.Duration(attempt+1) * 20 * time.Millisecond):
			}
		}
	}
}

// maxRefLen bounds the ref of a Get, Update or Remove call: an ID, an ID
// prefix or a name, which are all much shorter. A longer one would only be
// echoed back in a NotFound error.
const maxRefLen = 256

// checkRef refuses a request whose ref field is longer than maxRefLen.
func checkRef(req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName("ref")
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() {
		return nil
	}
	if n := len(r.Get(fd).String()); n > maxRefLen {
		return sdk.FieldErrors{{Field: "ref", Message: fmt.Sprintf("must be at most %d bytes, got %d", maxRefLen, n)}}
	}
	return nil
}
