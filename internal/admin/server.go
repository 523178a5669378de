// Package admin is the admin listener of `elemta serve` ([admin]):
// Prometheus metrics at /metrics, /healthz and /readyz, and a JSON API
// over the running server's plugins, stages, queue and config. Keys,
// endpoints and access rules: docs/metrics.md.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/elemta/elemta/internal/metrics"
	"github.com/elemta/elemta/internal/spool"
	"github.com/elemta/elemta/pluginhost"
)

// Deps are the running server's parts the admin listener reports on.
type Deps struct {
	// Plugins returns the manager serving now (a reload replaces it).
	Plugins func() *pluginhost.Manager
	// Reload, when set, is POST /api/v1/reload: it reloads the config
	// file and returns the report (serve.Server.Reload).
	Reload  func(ctx context.Context) (any, error)
	Metrics *metrics.Metrics
	// Spool returns the spool of the server serving now (an upgrade's
	// rollback reopens it); nil: the process serves no mail.
	Spool func() *spool.Spool
	// Config returns the config in force, secrets redacted.
	Config func() (map[string]any, error)
	Log    *slog.Logger
	Now    func() time.Time
}

// Server is a running admin listener.
type Server struct {
	cfg   Config
	deps  Deps
	token string
	ready *readiness
	http  *http.Server
	ln    net.Listener
	done  chan error
}

// New builds the admin handler; Start listens.
func New(cfg Config, d Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tok, err := cfg.token()
	if err != nil {
		return nil, err
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	s := &Server{cfg: cfg, deps: d, token: tok, done: make(chan error, 1)}
	s.ready = &readiness{interval: cfg.ReadyInterval.D(), timeout: cfg.ReadyTimeout.D(), now: d.Now,
		plugins: func() []string { return d.Plugins().Loaded() },
		health:  func(ctx context.Context, name string) error { return d.Plugins().HealthCheck(ctx, name) }}
	if d.Spool != nil {
		s.ready.spoolDir = d.Spool().Root()
	}
	s.http = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(d.Log.Handler(), slog.LevelWarn)}
	return s, nil
}

// Start listens on cfg.Listen and serves in the background.
func (s *Server) Start() error {
	network, addr := s.cfg.Address()
	if network == "unix" {
		// A socket left by a process that died is in the way; a live
		// server's is not ours to take.
		if c, err := net.Dial("unix", addr); err == nil {
			c.Close()
			return fmt.Errorf("admin: listen %s: another process serves this socket", s.cfg.Listen)
		}
		_ = os.Remove(addr)
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return fmt.Errorf("admin: listen: %w", err)
	}
	if network == "unix" {
		if err := os.Chmod(addr, 0o600); err != nil {
			ln.Close()
			return fmt.Errorf("admin: %w", err)
		}
	}
	s.ln = ln
	go func() { s.done <- s.http.Serve(ln) }()
	return nil
}

// Addr is the address listened on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops the listener, letting requests in flight finish until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.ln == nil {
		return nil
	}
	err := s.http.Shutdown(ctx)
	if serr := <-s.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// Handler is every admin endpoint behind the access check.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.deps.Metrics != nil {
		mux.Handle("GET /metrics", s.deps.Metrics.Handler())
	}
	mux.HandleFunc("GET /api/v1/plugins", s.plugins)
	mux.HandleFunc("POST /api/v1/test/{name...}", s.testPlugin)
	mux.HandleFunc("GET /api/v1/stages", s.stages)
	mux.HandleFunc("GET /api/v1/config", s.config)
	mux.HandleFunc("POST /api/v1/reload", s.reload)
	mux.HandleFunc("GET /api/v1/queue", s.queueList)
	mux.HandleFunc("POST /api/v1/queue/flush", s.queueFlush)
	mux.HandleFunc("GET /api/v1/queue/{id}", s.queueShow)
	mux.HandleFunc("POST /api/v1/queue/{id}/{op}", s.queueOp)
	mux.HandleFunc("DELETE /api/v1/queue/{id}", s.queueDelete)
	return s.guard(mux)
}

// guard refuses a request without the bearer token (when one is set),
// except /healthz, which tells nothing but that the process is up.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.token != "" && r.URL.Path != "/healthz" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="elemta admin"`)
				writeError(w, http.StatusUnauthorized, "a bearer token is required (Authorization: Bearer <token of [admin] token_file>)")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	res := s.ready.get(r.Context())
	code := http.StatusOK
	if !res.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, res)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// ErrorBody is the JSON of every error reply.
type ErrorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, ErrorBody{Error: fmt.Sprintf(format, args...)})
}
