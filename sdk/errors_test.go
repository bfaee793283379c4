package sdk

import (
	"errors"
	"fmt"
	"testing"
)

func TestGRPCRoundTrip(t *testing.T) {
	for _, kind := range []error{ErrNotFound, ErrAlreadyExists, ErrInvalidArgument, ErrFailedPrecondition, ErrUnavailable, ErrResourceExhausted, ErrPermissionDenied} {
		in := fmt.Errorf("service web: %w", kind)
		got := FromGRPC(ToGRPC(in))
		if !errors.Is(got, kind) {
			t.Errorf("FromGRPC(ToGRPC(%v)) = %v, want kind %v", in, got, kind)
		}
		if got.Error() != in.Error() {
			t.Errorf("message = %q, want %q", got.Error(), in.Error())
		}
	}
}

func TestFieldErrorsRoundTrip(t *testing.T) {
	var fe FieldErrors
	fe.Add("spec.replicas", "must be >= 0, got %d", -1)
	fe.Add("spec.task.container.image", "is required")
	got := FromGRPC(ToGRPC(fe.Err()))
	var back FieldErrors
	if !errors.As(got, &back) || len(back) != 2 || back[0].Field != "spec.replicas" || back[1].Field != "spec.task.container.image" {
		t.Fatalf("FromGRPC(ToGRPC(%v)) = %#v, want both fields back", fe, got)
	}
	if !errors.Is(got, ErrInvalidArgument) {
		t.Errorf("errors.Is(%v, ErrInvalidArgument) = false", got)
	}
	if (FieldErrors{}).Err() != nil {
		t.Errorf("empty FieldErrors.Err() != nil")
	}
}
