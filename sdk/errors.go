package sdk

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The error kinds. Wrap them with fmt.Errorf("...: %w", ErrNotFound) and test
// with errors.Is; ToGRPC and FromGRPC carry them across gRPC.
var (
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrUnavailable        = errors.New("unavailable")
	ErrResourceExhausted  = errors.New("resource exhausted")
	ErrPermissionDenied   = errors.New("permission denied")
)

var kindCodes = []struct {
	kind error
	code codes.Code
}{
	{ErrNotFound, codes.NotFound},
	{ErrAlreadyExists, codes.AlreadyExists},
	{ErrInvalidArgument, codes.InvalidArgument},
	{ErrFailedPrecondition, codes.FailedPrecondition},
	{ErrUnavailable, codes.Unavailable},
	{ErrResourceExhausted, codes.ResourceExhausted},
	{ErrPermissionDenied, codes.PermissionDenied},
}

// FieldError is one invalid field of a request.
type FieldError struct {
	// Field is the path of the field, e.g. "spec.mode.replicated.replicas".
	Field string
	// Message says what is wrong and what is allowed.
	Message string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Message }

// FieldErrors is a validation failure naming every bad field. It is of kind
// ErrInvalidArgument.
type FieldErrors []FieldError

func (fe FieldErrors) Error() string {
	parts := make([]string, len(fe))
	for i, e := range fe {
		parts[i] = e.Error()
	}
	return "invalid argument: " + strings.Join(parts, "; ")
}

// Is makes errors.Is(fe, ErrInvalidArgument) true.
func (fe FieldErrors) Is(target error) bool { return target == ErrInvalidArgument }

// Add records a bad field.
func (fe *FieldErrors) Add(field, format string, args ...any) {
	*fe = append(*fe, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Err returns fe as an error, or nil when no field was recorded.
func (fe FieldErrors) Err() error {
	if len(fe) == 0 {
		return nil
	}
	return fe
}

// ToGRPC turns err into a gRPC status error whose code matches its kind.
// FieldErrors travel as BadRequest field violations. Errors that already are
// a gRPC status pass through; unknown errors become codes.Unknown, and
// context errors their gRPC equivalents.
func ToGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var fe FieldErrors
	if errors.As(err, &fe) {
		st := status.New(codes.InvalidArgument, err.Error())
		br := &errdetails.BadRequest{}
		for _, f := range fe {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: f.Field, Description: f.Message})
		}
		if withDetails, derr := st.WithDetails(br); derr == nil {
			st = withDetails
		}
		return st.Err()
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	for _, kc := range kindCodes {
		if errors.Is(err, kc.kind) {
			return status.Error(kc.code, err.Error())
		}
	}
	return status.Error(codes.Unknown, err.Error())
}

// FromGRPC turns a gRPC status error back into an error of the matching
// kind, keeping the server's message. InvalidArgument with field violations
// becomes FieldErrors. Other errors pass through unchanged.
func FromGRPC(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if st.Code() == codes.InvalidArgument {
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) > 0 {
				fe := make(FieldErrors, 0, len(br.FieldViolations))
				for _, v := range br.FieldViolations {
					fe = append(fe, FieldError{Field: v.Field, Message: v.Description})
				}
				return fe
			}
		}
	}
	switch st.Code() {
	case codes.Canceled:
		return fmt.Errorf("%s: %w", st.Message(), context.Canceled)
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: %w", st.Message(), context.DeadlineExceeded)
	}
	for _, kc := range kindCodes {
		if st.Code() == kc.code {
			return &kindError{msg: st.Message(), kind: kc.kind}
		}
	}
	return errors.New(st.Message())
}

// kindError keeps a remote message verbatim while matching its kind.
type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }
