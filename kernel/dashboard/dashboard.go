package dashboard

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/shoalhq/shoal/kernel/events"
	"github.com/shoalhq/shoal/kernel/state"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

//go:embed assets
var assets embed.FS

// Assets are the page's files, for tests and the page-weight figure.
func Assets() fs.FS {
	sub, _ := fs.Sub(assets, "assets")
	return sub
}

// MinTokenLen is the shortest token accepted: 128 bits in hex, what
// `openssl rand -hex 16` prints. A shorter one could be guessed over the
// network.
const MinTokenLen = 32

// cookieName holds a browser's session: an HMAC of the token, so the token
// itself is not stored by the browser.
const cookieName = "shoal_dashboard"

// Config is the dashboard's part of the manager's config.
type Config struct {
	// Token, when not empty, lets a request with it (a bearer token, or
	// the session cookie /api/login gives for it) in from any address, as
	// an administrator who may scale, update and drain. Default: "" (the
	// dashboard serves loopback only, read only).
	Token string
}

// Deps are the manager's parts the dashboard reads and acts through.
type Deps struct {
	Store *state.Store
	Hub   *events.Hub
	// Control is the manager's own control API (its local socket): logs
	// and write actions go through it, so they reach the leader from a
	// follower and are validated as the CLI's are.
	Control controlv1.ControlClient
	// Leader returns the leader's node ID, or "" when there is none.
	Leader func() string
	// Self is this manager's node ID.
	Self string
}

// Handler serves the dashboard.
type Handler struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	mux  *http.ServeMux
	// session is the cookie value of an admin session.
	session string
}

var _ http.Handler = (*Handler)(nil)

// New returns the dashboard's handler.
func New(cfg Config, deps Deps, logger *slog.Logger) (*Handler, error) {
	if cfg.Token != "" && len(cfg.Token) < MinTokenLen {
		return nil, fmt.Errorf("dashboard: the token must be at least %d characters, got %d", MinTokenLen, len(cfg.Token))
	}
	if deps.Store == nil || deps.Hub == nil || deps.Control == nil || deps.Leader == nil {
		return nil, fmt.Errorf("dashboard: store, hub, control API and leader are all required")
	}
	h := &Handler{cfg: cfg, deps: deps, log: logger, mux: http.NewServeMux()}
	if cfg.Token != "" {
		mac := hmac.New(sha256.New, []byte(cfg.Token))
		mac.Write([]byte("shoal dashboard session"))
		h.session = hex.EncodeToString(mac.Sum(nil))
	}
	// The page's files hold no data: served to anyone, so that the page
	// can ask a client without credentials for the token.
	static := http.FileServerFS(Assets())
	h.mux.Handle("GET /{$}", h.read(static))
	h.mux.Handle("GET /ui/", http.StripPrefix("/ui", h.read(static)))
	h.mux.Handle("GET /app.js", static)
	h.mux.Handle("GET /app.css", static)
	h.mux.HandleFunc("POST /api/login", h.login)
	h.mux.Handle("GET /api/state", h.read(http.HandlerFunc(h.state)))
	h.mux.Handle("GET /api/events", h.read(http.HandlerFunc(h.events)))
	h.mux.Handle("GET /api/services/{ref}/logs", h.read(http.HandlerFunc(h.logs)))
	h.mux.Handle("POST /api/services/{ref}/scale", h.write(h.scale))
	h.mux.Handle("POST /api/services/{ref}/image", h.write(h.image))
	h.mux.Handle("POST /api/nodes/{ref}/availability", h.write(h.availability))
	return h, nil
}

// LoadToken reads a token file: its content without surrounding white
// space. The file must be the owner's alone (like an SSH key), since the
// token is the dashboard's admin credential.
func LoadToken(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("metrics.dashboard_token_file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("metrics.dashboard_token_file: %s is readable by others (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("metrics.dashboard_token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < MinTokenLen {
		return "", fmt.Errorf("metrics.dashboard_token_file: the token must be at least %d characters (e.g. openssl rand -hex 16), got %d", MinTokenLen, len(tok))
	}
	return tok, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The page is ours alone: no framing (clickjacking of the write
	// buttons), no scripts or styles but its own.
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	h.mux.ServeHTTP(w, r)
}

// access is what a request may do.
type access int

const (
	denied access = iota
	reader
	admin
)

// access decides what r may do, and why not when denied:
//   - the token (Authorization: Bearer, or the session cookie): admin;
//   - wrong credentials: denied, wherever from;
//   - none, from a loopback address, not relayed by a proxy (which would
//     make every client look local) and addressed to a loopback name (a
//     web page whose host name was rebound to 127.0.0.1 is not): reader;
//   - otherwise denied.
func (h *Handler) access(r *http.Request) (access, int, string) {
	if tok, ok := bearer(r); ok {
		if h.cfg.Token != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(h.cfg.Token)) == 1 {
			return admin, 0, ""
		}
		return denied, http.StatusUnauthorized, "wrong token"
	}
	if c, err := r.Cookie(cookieName); err == nil {
		if h.session != "" && subtle.ConstantTimeCompare([]byte(c.Value), []byte(h.session)) == 1 {
			return admin, 0, ""
		}
		return denied, http.StatusUnauthorized, "the session has expired: log in again"
	}
	if loopbackPeer(r) {
		if r.Header.Get("Forwarded") != "" || r.Header.Get("X-Forwarded-For") != "" {
			return denied, h.deniedStatus(), "a request relayed by a proxy needs the dashboard token"
		}
		if !loopbackHost(r.Host) {
			return denied, http.StatusForbidden, "a loopback client must address the dashboard as localhost, 127.0.0.1 or [::1]"
		}
		return reader, 0, ""
	}
	return denied, h.deniedStatus(), "a client not on loopback needs the dashboard token"
}

// deniedStatus is 401 when a token would let the client in, 403 when none
// is configured.
func (h *Handler) deniedStatus() int {
	if h.cfg.Token == "" {
		return http.StatusForbidden
	}
	return http.StatusUnauthorized
}

func bearer(r *http.Request) (string, bool) {
	a := r.Header.Get("Authorization")
	if a == "" {
		return "", false
	}
	scheme, tok, _ := strings.Cut(a, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", true // credentials of another kind: wrong
	}
	return strings.TrimSpace(tok), true
}

func loopbackPeer(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// read lets readers and admins through.
func (h *Handler) read(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, code, why := h.access(r)
		if a == denied {
			h.refuse(w, r, code, why)
			return
		}
		next.ServeHTTP(w, r.WithContext(withAccess(r.Context(), a)))
	})
}

// refuse answers a denied request: the login page for a browser asking
// for the page (with the status, and no data), an error otherwise.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, code int, why string) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="shoal dashboard"`)
	}
	if (r.URL.Path == "/" || r.URL.Path == "/index.html") && code == http.StatusUnauthorized {
		if b, err := fs.ReadFile(Assets(), "index.html"); err == nil {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(code)
			w.Write(b)
			return
		}
	}
	writeError(w, code, why)
}

// login trades the token for a session cookie: EventSource cannot send
// an Authorization header.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Token string `json:"token"`
	}
	if err := decode(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if h.cfg.Token == "" {
		writeError(w, http.StatusForbidden, "no dashboard token is configured (metrics.dashboard_token_file)")
		return
	}
	if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(req.Token)), []byte(h.cfg.Token)) != 1 {
		writeError(w, http.StatusUnauthorized, "wrong token")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: h.session, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	w.WriteHeader(http.StatusNoContent)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
