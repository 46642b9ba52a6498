package ops

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/transport"
)

// requestTimeout bounds the bus calls of one request.
const requestTimeout = 10 * time.Second

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"backlog": func(n int64) string {
		if n < 0 {
			return "?"
		}
		return fmt.Sprint(n)
	},
	"ms": func(d time.Duration) string {
		if d == 0 {
			return "–"
		}
		return d.Round(10 * time.Microsecond).String()
	},
}

// page is what every template gets.
type page struct {
	Title    string
	Token    string
	ReadOnly bool
	Hidden   bool // payloads hidden
	Refresh  int  // seconds
	Flash    string
	Error    string
	Data     any
}

func (s *server) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	p := page{Title: s.cfg.title, Token: s.token, ReadOnly: s.cfg.readOnly, Hidden: s.cfg.hidePayloads,
		Refresh: int(s.cfg.refresh / time.Second), Flash: r.URL.Query().Get("done"), Data: data}
	var buf bytes.Buffer
	if err := s.pages[name].Execute(&buf, p); err != nil {
		http.Error(w, "herald/ops: render "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// fail shows err on the error page.
func (s *server) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	r.URL.RawQuery = ""
	s.render(w, r, status, "error", err.Error())
}

func (s *server) handlersPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	stats, err := s.b.Stats(ctx)
	data := struct {
		Handlers []bus.HandlerStats
		Err      string
	}{Handlers: stats}
	if err != nil {
		data.Err = err.Error()
	}
	s.render(w, r, http.StatusOK, "handlers", data)
}

// handlerJSON is one handler in stats.json, read by the page's script.
type handlerJSON struct {
	Handler        string `json:"handler"`
	Backlog        int64  `json:"backlog"`
	InFlight       int64  `json:"in_flight"`
	Handled        uint64 `json:"handled"`
	Poisoned       uint64 `json:"poisoned"`
	FailedAttempts uint64 `json:"failed_attempts"`
	LastError      string `json:"last_error"`
	LastErrorAt    string `json:"last_error_at"`
	P50            string `json:"p50"`
	P99            string `json:"p99"`
}

func (s *server) statsJSON(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	stats, err := s.b.Stats(ctx)
	out := struct {
		At       time.Time     `json:"at"`
		Handlers []handlerJSON `json:"handlers"`
		Error    string        `json:"error,omitempty"`
	}{At: time.Now(), Handlers: make([]handlerJSON, 0, len(stats))}
	if err != nil {
		out.Error = err.Error()
	}
	ms := funcs["ms"].(func(time.Duration) string)
	when := funcs["when"].(func(time.Time) string)
	for _, h := range stats {
		out.Handlers = append(out.Handlers, handlerJSON{
			Handler: h.Handler, Backlog: h.Backlog, InFlight: h.InFlight, Handled: h.Handled,
			Poisoned: h.Poisoned, FailedAttempts: h.FailedAttempts, LastError: h.LastError,
			LastErrorAt: when(h.LastErrorAt), P50: ms(h.Latency.P50), P99: ms(h.Latency.P99),
		})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (s *server) poisonPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	pq := transport.PoisonQuery{Handler: q.Get("handler"), Event: q.Get("event"), After: q.Get("after"), Limit: s.cfg.pageSize}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	recs, next, err := s.b.Poison().Page(ctx, pq)
	if err != nil {
		s.fail(w, r, http.StatusBadGateway, fmt.Errorf("poison records: %w", err))
		return
	}
	var handlers []string
	if stats, _ := s.b.Stats(ctx); len(stats) > 0 {
		for _, h := range stats {
			handlers = append(handlers, h.Handler)
		}
	}
	data := struct {
		Query    transport.PoisonQuery
		Records  []transport.PoisonRecord
		Handlers []string
		Next     string // the next page's query, "" after the last
		First    string // the first page's query, "" on it
	}{Query: pq, Records: recs, Handlers: handlers}
	filter := url.Values{}
	if pq.Handler != "" {
		filter.Set("handler", pq.Handler)
	}
	if pq.Event != "" {
		filter.Set("event", pq.Event)
	}
	if pq.After != "" {
		data.First = "?" + filter.Encode()
	}
	if next != "" {
		filter.Set("after", next)
		data.Next = "?" + filter.Encode()
	}
	s.render(w, r, http.StatusOK, "poison", data)
}

// metaRow is one metadata entry of a record.
type metaRow struct{ Key, Value string }

func (s *server) recordPage(w http.ResponseWriter, r *http.Request) {
	rec, ok := s.get(w, r, r.URL.Query().Get("id"))
	if !ok {
		return
	}
	data := struct {
		Record   transport.PoisonRecord
		Metadata []metaRow
		Payload  string
	}{Record: rec}
	for _, k := range slices.Sorted(maps.Keys(rec.Metadata)) {
		v := rec.Metadata[k]
		if s.cfg.hidePayloads && !strings.HasPrefix(k, "Herald-") && k != transport.KeyContentType {
			v = "(hidden)"
		}
		data.Metadata = append(data.Metadata, metaRow{k, v})
	}
	var buf bytes.Buffer
	switch {
	case s.cfg.hidePayloads:
		data.Payload = fmt.Sprintf("(%d bytes, hidden)", len(rec.Payload))
	case json.Indent(&buf, rec.Payload, "", "  ") == nil:
		data.Payload = buf.String()
	default:
		data.Payload = fmt.Sprintf("%q", rec.Payload)
	}
	s.render(w, r, http.StatusOK, "record", data)
}

// get reads the record id, or shows why it cannot.
func (s *server) get(w http.ResponseWriter, r *http.Request, id string) (transport.PoisonRecord, bool) {
	if id == "" {
		s.fail(w, r, http.StatusBadRequest, errors.New("no record ID given"))
		return transport.PoisonRecord{}, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	rec, err := s.b.Poison().Get(ctx, id)
	switch {
	case errors.Is(err, bus.ErrPoisonNotFound):
		s.fail(w, r, http.StatusNotFound, fmt.Errorf("no poison record %q (replayed or purged?)", id))
		return rec, false
	case err != nil:
		s.fail(w, r, http.StatusBadGateway, fmt.Errorf("poison record %q: %w", id, err))
		return rec, false
	}
	return rec, true
}

// action is what the confirmation page asks about and its form posts.
type action struct {
	Verb    string // "replay" or "purge"
	ID      string // one record, or
	Handler string // every record of a handler ("" with no ID: every record)
	Record  *transport.PoisonRecord
}

func (s *server) confirmPage(w http.ResponseWriter, r *http.Request) {
	if s.cfg.readOnly {
		s.fail(w, r, http.StatusForbidden, errors.New("this page is read-only"))
		return
	}
	q := r.URL.Query()
	a := action{Verb: q.Get("action"), ID: q.Get("id"), Handler: q.Get("handler")}
	if a.Verb != "replay" && a.Verb != "purge" {
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("unknown action %q", a.Verb))
		return
	}
	if a.ID != "" {
		rec, ok := s.get(w, r, a.ID)
		if !ok {
			return
		}
		a.Record = &rec
	}
	s.render(w, r, http.StatusOK, "confirm", a)
}

// guard refuses state-changing requests that are read-only, lack the token,
// or come from another site.
func (s *server) guard(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.readOnly {
			s.fail(w, r, http.StatusForbidden, errors.New("this page is read-only"))
			return
		}
		if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
			s.fail(w, r, http.StatusForbidden, fmt.Errorf("cross-site request refused (Sec-Fetch-Site: %s)", site))
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" {
			u, err := url.Parse(origin)
			if err != nil || u.Host != r.Host {
				s.fail(w, r, http.StatusForbidden, fmt.Errorf("cross-origin request refused (Origin %q, host %q)", origin, r.Host))
				return
			}
		}
		if subtle.ConstantTimeCompare([]byte(r.PostFormValue("token")), []byte(s.token)) != 1 {
			s.fail(w, r, http.StatusForbidden, errors.New("missing or stale form token: reload the page and try again"))
			return
		}
		next(w, r)
	}
}

func (s *server) replay(w http.ResponseWriter, r *http.Request) {
	q := s.b.Poison()
	s.poisonAction(w, r, "replay", "replayed", q.Replay, q.ReplayAll)
}

func (s *server) purge(w http.ResponseWriter, r *http.Request) {
	s.poisonAction(w, r, "purge", "purged", s.b.Poison().Purge, s.purgeAll)
}

// poisonAction does what a replay or purge form asks: one(id) to the record
// it names, or else all(handler) to the handler's records (every handler's
// when the form names none), which returns how many it did before any error.
// verb and past name the action in the page it answers with.
func (s *server) poisonAction(w http.ResponseWriter, r *http.Request, verb, past string,
	one func(ctx context.Context, id string) error, all func(ctx context.Context, handler string) (int, error)) {
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	id, handler := r.PostFormValue("id"), r.PostFormValue("handler")
	if id != "" {
		if err := one(ctx, id); err != nil {
			s.actionFailed(w, r, verb, err)
			return
		}
		s.done(w, r, past+" record "+id, handler)
		return
	}
	n, err := all(ctx, handler)
	if err != nil {
		s.actionFailed(w, r, verb, fmt.Errorf("%s %d records, then: %w", past, n, err))
		return
	}
	s.done(w, r, fmt.Sprintf("%s %d records", past, n), handler)
}

// purgeAll purges the records of handler (of every handler when empty), one
// at a time, skipping those already gone, and returns how many it purged.
func (s *server) purgeAll(ctx context.Context, handler string) (int, error) {
	n := 0
	for rec, err := range s.b.Poison().All(ctx, transport.PoisonQuery{Handler: handler}) {
		if err == nil {
			err = s.b.Poison().Purge(ctx, rec.ID)
			if errors.Is(err, bus.ErrPoisonNotFound) {
				continue
			}
		}
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (s *server) actionFailed(w http.ResponseWriter, r *http.Request, verb string, err error) {
	status := http.StatusBadGateway
	switch {
	case errors.Is(err, bus.ErrPoisonNotFound):
		status = http.StatusNotFound
	case errors.Is(err, transport.ErrNoHandler):
		status = http.StatusConflict
	}
	s.fail(w, r, status, fmt.Errorf("%s: %w", verb, err))
}

// done sends the browser back to the poison records, saying what was done.
func (s *server) done(w http.ResponseWriter, r *http.Request, what, handler string) {
	v := url.Values{"done": {what}}
	if handler != "" {
		v.Set("handler", handler)
	}
	// A relative Location, resolved by the browser against the request's own
	// URL, keeps the prefix the page is mounted under (http.Redirect would
	// resolve it against the stripped path).
	w.Header().Set("Location", "poison?"+v.Encode())
	w.WriteHeader(http.StatusSeeOther)
}
