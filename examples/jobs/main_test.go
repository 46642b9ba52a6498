package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/middleware"
	"github.com/heraldbus/herald/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testTimeout bounds every wait of a test.
const testTimeout = 20 * time.Second

// testConfig is the service's configuration in tests: quick retries.
func testConfig() config {
	cfg := defaultConfig()
	cfg.EmailRetry = middleware.RetryPolicy{
		MaxAttempts:        3,
		ImmediateAttempts:  1,
		RedeliveryDelay:    20 * time.Millisecond,
		MaxRedeliveryDelay: 40 * time.Millisecond,
	}
	cfg.QuoteTimeout = 5 * time.Second
	return cfg
}

// transports lists where the tests run the service: memory, an embedded NATS
// server, and the machine's NATS server when NATS_URL is set (on a stream,
// prefix and bucket of the test's own, deleted afterwards).
var transports = []struct {
	name  string
	setup func(t *testing.T, cfg *config)
}{
	{"memory", func(*testing.T, *config) {}},
	{"nats", func(t *testing.T, cfg *config) { cfg.NATSURL = natstest.New(t).URL() }},
	{"machine", func(t *testing.T, cfg *config) {
		m := natstest.NewMachine(t, "jobs")
		cfg.NATSURL, cfg.Stream, cfg.Prefix = m.URL, m.StreamName, m.SubjectPrefix
		cfg.Bucket = m.StreamName + "_BLOBS"
		t.Cleanup(func() { deleteBucket(t, m.URL, cfg.Bucket) })
	}},
}

// deleteBucket deletes the key-value bucket of a test on the machine's
// server.
func deleteBucket(t *testing.T, url, bucket string) {
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Errorf("deleting bucket %s: %v", bucket, err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Errorf("deleting bucket %s: %v", bucket, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := js.DeleteKeyValue(ctx, bucket); err != nil {
		t.Errorf("deleting bucket %s: %v", bucket, err)
	}
}

// forEachTransport runs test once per transport, as a subtest.
func forEachTransport(t *testing.T, test func(t *testing.T, cfg config)) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			cfg := testConfig()
			tr.setup(t, &cfg)
			test(t, cfg)
		})
	}
}

// env is the service under test, served by httptest.
type env struct {
	t   *testing.T
	app *app
	srv *httptest.Server
	log *bustest.Buffer
}

// start starts the service with cfg; it is closed when the test ends, and
// must close cleanly.
func start(t *testing.T, cfg config) *env {
	t.Helper()
	log := &bustest.Buffer{}
	cfg.Log = log
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a, err := newApp(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := a.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return &env{t: t, app: a, srv: srv, log: log}
}

// do sends a request and returns the response's status, headers and body.
func (e *env) do(method, path, contentType string, body []byte) (int, http.Header, []byte) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, data
}

// post posts a job and returns its ID, failing the test unless it is
// accepted with its status as Location.
func (e *env) post(path, contentType string, body []byte) string {
	e.t.Helper()
	code, h, data := e.do(http.MethodPost, path, contentType, body)
	if code != http.StatusAccepted {
		e.t.Fatalf("POST %s: %d %s", path, code, data)
	}
	var acc accepted
	if err := json.Unmarshal(data, &acc); err != nil {
		e.t.Fatalf("POST %s: %v in %s", path, err, data)
	}
	if loc := h.Get("Location"); loc != "/jobs/"+acc.ID || acc.Status != loc {
		e.t.Fatalf("POST %s: Location %q, body %s", path, loc, data)
	}
	return acc.ID
}

// postEmail posts an email job.
func (e *env) postEmail(to, subject, body string) string {
	e.t.Helper()
	data, err := json.Marshal(EmailRequested{To: to, Subject: subject, Body: body})
	if err != nil {
		e.t.Fatal(err)
	}
	return e.post("/emails", "application/json", data)
}

// expectError checks that a request is answered with code and an error
// message containing want.
func (e *env) expectError(method, path, contentType string, body []byte, code int, want string) {
	e.t.Helper()
	got, _, data := e.do(method, path, contentType, body)
	var he httpError
	if err := json.Unmarshal(data, &he); err != nil || got != code || !strings.Contains(he.Error, want) {
		e.t.Errorf("%s %s: %d %s, want %d and an error containing %q", method, path, got, data, code, want)
	}
}

// waitMail waits until cond holds for the mailbox.
func (e *env) waitMail(what string, cond func(msgs []receivedMail, attempts int) bool) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := e.app.mail.Wait(ctx, cond); err != nil {
		e.t.Fatalf("waiting for %s: %v (%d messages, %d attempts)", what, err, len(e.app.mail.Messages()), e.app.mail.Attempts())
	}
}

// waitFor polls cond until it holds, failing the test after testTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	bustest.Eventually(t, testTimeout, cond, "waiting for %s", what)
}

// waitPoisoned waits for the poison record of the event id at handler.
func (e *env) waitPoisoned(handler, id string) transport.PoisonRecord {
	e.t.Helper()
	var rec transport.PoisonRecord
	waitFor(e.t, "the poison record of "+id, func() bool {
		recs, err := e.app.bus.Poison().List(context.Background(), handler)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, r := range recs {
			if r.Event.ID == id {
				rec = r
				return true
			}
		}
		return false
	})
	return rec
}

// len returns how many blobs the store holds.
func (s *memStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.blobs)
}

// status returns the status of job id, failing the test unless it is 200.
func (e *env) status(id string) jobStatus {
	e.t.Helper()
	code, _, data := e.do(http.MethodGet, "/jobs/"+id, "", nil)
	if code != http.StatusOK {
		e.t.Fatalf("GET /jobs/%s: %d %s", id, code, data)
	}
	var st jobStatus
	if err := json.Unmarshal(data, &st); err != nil {
		e.t.Fatalf("GET /jobs/%s: %v in %s", id, err, data)
	}
	return st
}

// waitState waits until job id is in state, and returns its status. A job
// accepted by another replica may be unknown for a moment (its tracking
// record is written in the background over NATS): 404 is waited through too.
func (e *env) waitState(id, state string) jobStatus {
	e.t.Helper()
	return e.waitStatus(id, func(st jobStatus) bool { return st.State == state })
}

// lastBody prints the last body seen when a wait fails.
type lastBody struct{ s string }

func (l *lastBody) String() string { return l.s }

// waitStatus waits until cond holds for the status of job id.
func (e *env) waitStatus(id string, cond func(jobStatus) bool) jobStatus {
	e.t.Helper()
	var st jobStatus
	var last lastBody
	bustest.Eventually(e.t, testTimeout, func() bool {
		code, _, data := e.do(http.MethodGet, "/jobs/"+id, "", nil)
		last.s = string(data)
		st = jobStatus{}
		return code == http.StatusOK && json.Unmarshal(data, &st) == nil && cond(st)
	}, "the status of %s; last %v", id, &last)
	return st
}

// send sends a token on ch, failing the test after testTimeout.
func send(t *testing.T, ch chan<- struct{}) {
	t.Helper()
	select {
	case ch <- struct{}{}:
	case <-time.After(testTimeout):
		t.Fatal("nobody took the token")
	}
}

// receive receives from ch, failing the test after testTimeout.
func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatal("nothing received")
		var zero T
		return zero
	}
}
