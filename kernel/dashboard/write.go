package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/controlapi"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// refRE is an object's name, ID or ID prefix, as the control API takes it
// (a name is a relaxed DNS label, an ID letters and digits).
var refRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// maxRefLen is a DNS label's length, the longest name the control API
// accepts; IDs are shorter.
const maxRefLen = 63

// maxBody bounds a write request: the largest is an image reference (at
// most 512 bytes) in a small JSON object.
const maxBody = 4 << 10

// conflictRetries is how often a write re-reads the object after another
// writer changed it between the read and the write, as the CLI does.
const conflictRetries = 3

func checkRef(ref string) string {
	switch {
	case ref == "":
		return "is required"
	case len(ref) > maxRefLen:
		return fmt.Sprintf("must be at most %d characters, got %d", maxRefLen, len(ref))
	case !refRE.MatchString(ref):
		return fmt.Sprintf("must be a name or ID: letters, digits, '_', '.' or '-', starting with a letter or digit, got %q", ref)
	}
	return ""
}

// write lets admins through, to a handler of a JSON request.
func (h *Handler) write(fn func(ctx context.Context, ref string, body []byte) (int, any)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, code, why := h.access(r)
		switch {
		case a == reader:
			writeError(w, h.deniedStatus(), "write actions need the dashboard token (metrics.dashboard_token_file); loopback without it is read only")
			return
		case a != admin:
			h.refuse(w, r, code, why)
			return
		}
		// A cross-site form cannot send JSON, and a cross-site script
		// gets no cookie (SameSite) and would have to name its origin.
		if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, "the request must be application/json")
			return
		}
		if o := r.Header.Get("Origin"); o != "" {
			if u, err := url.Parse(o); err != nil || u.Host != r.Host {
				writeError(w, http.StatusForbidden, "cross-origin write refused")
				return
			}
		}
		ref := r.PathValue("ref")
		if why := checkRef(ref); why != "" {
			writeError(w, http.StatusBadRequest, "ref: "+why)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request must be at most %d bytes", maxBody))
			return
		}
		code, v := fn(r.Context(), ref, body)
		h.log.Info("dashboard write", "path", r.URL.Path, "status", code)
		writeJSON(w, code, v)
	})
}

// decode reads a JSON request strictly: unknown fields are refused.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeBytes(http.MaxBytesReader(w, r.Body, maxBody), v)
}

func decodeBytes(r io.Reader, v any) error {
	d := json.NewDecoder(r)
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("the request body: %w", err)
	}
	if d.More() {
		return errors.New("the request body: one JSON object expected")
	}
	return nil
}

func badRequest(msg string) (int, any) { return http.StatusBadRequest, map[string]string{"error": msg} }

func (h *Handler) scale(ctx context.Context, ref string, body []byte) (int, any) {
	var req struct {
		Replicas *int64 `json:"replicas"`
	}
	if err := decodeBytes(bytesReader(body), &req); err != nil {
		return badRequest(err.Error())
	}
	if req.Replicas == nil {
		return badRequest("replicas: is required")
	}
	return h.updateService(ctx, ref, func(spec *objectv1.ServiceSpec) string {
		if spec.GetReplicated() == nil {
			return "replicas: only a replicated service can be scaled"
		}
		spec.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: *req.Replicas}}
		return ""
	})
}

func (h *Handler) image(ctx context.Context, ref string, body []byte) (int, any) {
	var req struct {
		Image string `json:"image"`
	}
	if err := decodeBytes(bytesReader(body), &req); err != nil {
		return badRequest(err.Error())
	}
	return h.updateService(ctx, ref, func(spec *objectv1.ServiceSpec) string {
		if spec.GetTask().GetContainer() == nil {
			return "image: the service has no container"
		}
		spec.Task.Container.Image = req.Image
		return ""
	})
}

// updateService changes a service's spec, checks it as the control API
// will (so a bad value is refused before any write, with the field named),
// and writes it with the version read.
func (h *Handler) updateService(ctx context.Context, ref string, change func(*objectv1.ServiceSpec) string) (int, any) {
	for attempt := 0; ; attempt++ {
		got, err := h.deps.Control.GetService(ctx, &controlv1.GetServiceRequest{Ref: ref})
		if err != nil {
			return httpResult(err)
		}
		svc := got.GetService()
		spec := proto.CloneOf(svc.GetSpec())
		if why := change(spec); why != "" {
			return badRequest(why)
		}
		if err := controlapi.ValidateServiceSpec(spec); err != nil {
			return badRequest(errorText(err))
		}
		resp, err := h.deps.Control.UpdateService(ctx, &controlv1.UpdateServiceRequest{Ref: svc.GetId(), Version: svc.GetMeta().GetVersion(), Spec: spec})
		if status.Code(err) == codes.FailedPrecondition && attempt < conflictRetries {
			continue
		}
		if err != nil {
			return httpResult(err)
		}
		return http.StatusOK, rawView(viewService(resp.GetService()))
	}
}

func (h *Handler) availability(ctx context.Context, ref string, body []byte) (int, any) {
	var req struct {
		Availability string `json:"availability"`
	}
	if err := decodeBytes(bytesReader(body), &req); err != nil {
		return badRequest(err.Error())
	}
	avail, ok := map[string]objectv1.NodeAvailability{
		"active": objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE,
		"pause":  objectv1.NodeAvailability_NODE_AVAILABILITY_PAUSE,
		"drain":  objectv1.NodeAvailability_NODE_AVAILABILITY_DRAIN,
	}[req.Availability]
	if !ok {
		return badRequest(fmt.Sprintf("availability: must be active, pause or drain, got %q", req.Availability))
	}
	for attempt := 0; ; attempt++ {
		got, err := h.deps.Control.GetNode(ctx, &controlv1.GetNodeRequest{Ref: ref})
		if err != nil {
			return httpResult(err)
		}
		n := got.GetNode()
		spec := proto.CloneOf(n.GetSpec())
		if spec == nil {
			spec = &objectv1.NodeSpec{}
		}
		spec.Availability = avail
		if err := controlapi.ValidateNodeSpec(spec); err != nil {
			return badRequest(errorText(err))
		}
		resp, err := h.deps.Control.UpdateNode(ctx, &controlv1.UpdateNodeRequest{Ref: n.GetId(), Version: n.GetMeta().GetVersion(), Spec: spec})
		if status.Code(err) == codes.FailedPrecondition && attempt < conflictRetries {
			continue
		}
		if err != nil {
			return httpResult(err)
		}
		return http.StatusOK, rawView(viewNode(resp.GetNode()))
	}
}

func rawView(m proto.Message) json.RawMessage {
	b, err := marshal(m)
	if err != nil {
		return json.RawMessage(`{}`)
	}
	return b
}

func httpResult(err error) (int, any) {
	code, msg := httpError(err)
	return code, map[string]string{"error": msg}
}

// httpError maps a control API error to an HTTP status and its message.
func httpError(err error) (int, string) {
	code := http.StatusInternalServerError
	switch status.Code(err) {
	case codes.InvalidArgument, codes.OutOfRange:
		code = http.StatusBadRequest
	case codes.NotFound:
		code = http.StatusNotFound
	case codes.AlreadyExists, codes.FailedPrecondition, codes.Aborted:
		code = http.StatusConflict
	case codes.PermissionDenied:
		code = http.StatusForbidden
	case codes.Unauthenticated:
		code = http.StatusUnauthorized
	case codes.ResourceExhausted:
		code = http.StatusTooManyRequests
	case codes.Unavailable:
		code = http.StatusServiceUnavailable
	case codes.DeadlineExceeded, codes.Canceled:
		code = http.StatusGatewayTimeout
	}
	return code, errorText(err)
}

func errorText(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Message()
	}
	return err.Error()
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
