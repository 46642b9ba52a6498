// Package ops serves a web page for operating a Herald bus: its handlers with
// their backlog, deliveries in flight, throughput, failures and last error,
// refreshed every few seconds; the poison records, filtered by handler and
// event and paged; one record with its metadata, error, stack and payload;
// and replay and purge, each after a confirmation step.
//
//	h, err := ops.Handler(b)
//	mux.Handle("/ops/", http.StripPrefix("/ops", requireOperator(h)))
//
// The page has no login of its own: mount it behind your authentication
// (see the example). Anyone who reaches it can replay and purge records,
// unless [ReadOnly] is given, and read payloads, unless [HidePayloads] is.
// State-changing requests are POSTs that must carry the page's token and,
// when the browser sends them, an Origin of the same host and a
// Sec-Fetch-Site of same-origin: a page of another site cannot make an
// operator's browser replay or purge.
//
// Everything the page needs (CSS, script) is embedded: it works offline and
// loads nothing from elsewhere. Its links are relative, so it can be mounted
// under any path prefix with [http.StripPrefix].
package ops

import (
	"crypto/rand"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"time"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/transport"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Defaults of the options.
const (
	DefaultPageSize = 50
	DefaultRefresh  = 5 * time.Second
)

// Option configures [Handler].
type Option func(*config) error

type config struct {
	readOnly     bool
	hidePayloads bool
	pageSize     int
	refresh      time.Duration
	title        string
}

// ReadOnly hides the replay and purge buttons and refuses every POST with
// 403 Forbidden: the page only shows.
func ReadOnly() Option {
	return func(c *config) error { c.readOnly = true; return nil }
}

// HidePayloads shows a record's size instead of its payload, and hides the
// values of its metadata other than Herald's own, since they may hold
// personal data. Errors and stacks are still shown.
func HidePayloads() Option {
	return func(c *config) error { c.hidePayloads = true; return nil }
}

// WithPageSize sets how many poison records a page lists; default
// [DefaultPageSize], from 1 to 1000.
func WithPageSize(n int) Option {
	return func(c *config) error {
		if n < 1 || n > 1000 {
			return fmt.Errorf("herald/ops: page size %d: %w (from 1 to 1000)", n, transport.ErrInvalidOption)
		}
		c.pageSize = n
		return nil
	}
}

// WithRefresh sets how often the handlers page refreshes its figures;
// default [DefaultRefresh], from 1 second to 1 hour.
func WithRefresh(d time.Duration) Option {
	return func(c *config) error {
		if d < time.Second || d > time.Hour {
			return fmt.Errorf("herald/ops: refresh %v: %w (from 1s to 1h)", d, transport.ErrInvalidOption)
		}
		c.refresh = d
		return nil
	}
}

// WithTitle sets the title the pages show; default "Herald".
func WithTitle(title string) Option {
	return func(c *config) error {
		if title == "" {
			return fmt.Errorf("herald/ops: empty title: %w", transport.ErrInvalidOption)
		}
		c.title = title
		return nil
	}
}

// server is the http.Handler returned by Handler.
type server struct {
	b     *bus.Bus
	cfg   config
	token string // the CSRF token of the pages' forms
	pages map[string]*template.Template
	mux   *http.ServeMux
}

// Handler returns the operator page of b, to mount where operators (and only
// they: see the package documentation) can reach it. It reads b's handlers
// with [bus.Bus.Stats] and its poison queue with [bus.Bus.Poison], on every
// request: it keeps no state but a random token for its forms, made here. It
// is safe for concurrent use. Invalid options give an error wrapping
// [transport.ErrInvalidOption]; a nil bus one wrapping the same.
func Handler(b *bus.Bus, opts ...Option) (http.Handler, error) {
	if b == nil {
		return nil, fmt.Errorf("herald/ops: nil bus: %w", transport.ErrInvalidOption)
	}
	cfg := config{pageSize: DefaultPageSize, refresh: DefaultRefresh, title: "Herald"}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("herald/ops: nil option: %w", transport.ErrInvalidOption)
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	var key [24]byte
	_, _ = rand.Read(key[:]) // never fails (crypto/rand)
	s := &server{b: b, cfg: cfg, token: hex.EncodeToString(key[:]), pages: map[string]*template.Template{}}
	for _, name := range []string{"handlers", "poison", "record", "confirm", "error"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("herald/ops: template %s: %w", name, err)
		}
		s.pages[name] = t
	}
	static, _ := fs.Sub(staticFS, "static")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.handlersPage)
	mux.HandleFunc("GET /stats.json", s.statsJSON)
	mux.HandleFunc("GET /poison", s.poisonPage)
	mux.HandleFunc("GET /record", s.recordPage)
	mux.HandleFunc("GET /confirm", s.confirmPage)
	mux.HandleFunc("POST /replay", s.guard(s.replay))
	mux.HandleFunc("POST /purge", s.guard(s.purge))
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	s.mux = mux
	return s, nil
}

// ServeHTTP serves the pages. Mounted with http.StripPrefix("/ops", h), a
// request for "/ops" (no trailing slash) is redirected to "/ops/", so that
// the relative links resolve.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "" {
		http.Redirect(w, r, pathOf(r)+"/", http.StatusMovedPermanently)
		return
	}
	w.Header().Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "same-origin")
	w.Header().Set("Cache-Control", "no-store")
	s.mux.ServeHTTP(w, r)
}

// pathOf is the path the client asked for, before any StripPrefix.
func pathOf(r *http.Request) string {
	if r.RequestURI == "" {
		return ""
	}
	u := r.RequestURI
	for i := 0; i < len(u); i++ {
		if u[i] == '?' {
			return u[:i]
		}
	}
	return u
}
