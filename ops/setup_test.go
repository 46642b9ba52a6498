package ops_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/ops"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Signup is the event of the tests.
type Signup struct {
	Email string `json:"email"`
	Note  string `json:"note"`
}

func (Signup) EventName() string { return "users.Signup" }

// shop is a bus on an embedded NATS server with two handlers: welcome,
// which poisons every Signup while broken is set, and archive, which holds
// its first Signup until release is closed, so that the others wait in its
// backlog.
type shop struct {
	b        *bus.Bus
	broken   atomic.Bool
	release  chan struct{}
	records  []string // welcome's poison records, oldest first
	archived atomic.Int64
}

// newShop starts the shop and publishes n Signups, whose notes hold markup;
// it returns once welcome has poisoned them all.
func newShop(t *testing.T, n int) *shop {
	t.Helper()
	return newShopOn(t, n, nats.Config{URL: natstest.New(t).URL()})
}

// newShopOn is newShop on the server, stream and prefix of cfg.
func newShopOn(t *testing.T, n int, cfg nats.Config) *shop {
	t.Helper()
	tr, err := nats.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.New(bus.WithTransport(tr))
	if err != nil {
		t.Fatal(err)
	}
	s := &shop{b: b, release: make(chan struct{})}
	s.broken.Store(true)
	if _, err := bus.Subscribe(b, "welcome", func(_ context.Context, e Signup) error {
		if s.broken.Load() {
			return bus.Permanent(errors.New("smtp refused <script>alert('err')</script> " + e.Email))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Subscribe(b, "archive", func(ctx context.Context, e Signup) error {
		select {
		case <-s.release:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.archived.Add(1)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.unblock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Close(ctx)
	})
	for i := range n {
		e := Signup{Email: string(rune('a'+i)) + "@example.com", Note: "<script>alert('payload')</script>"}
		if err := bus.Publish(ctx, b, e); err != nil {
			t.Fatal(err)
		}
	}
	s.records = s.waitRecords(t, n)
	return s
}

// unblock lets archive go on; safe to call more than once.
func (s *shop) unblock() {
	select {
	case <-s.release:
	default:
		close(s.release)
	}
}

// waitRecords waits until welcome has n poison records.
func (s *shop) waitRecords(t *testing.T, n int) []string {
	t.Helper()
	var ids []string
	waitFor(t, "welcome's poison records", func() bool {
		recs, err := s.b.Poison().List(context.Background(), "welcome")
		ids = ids[:0]
		for _, r := range recs {
			ids = append(ids, r.ID)
		}
		return err == nil && len(recs) == n
	})
	return ids
}

// stat returns the named handler's stats.
func (s *shop) stat(t *testing.T, name string) bus.HandlerStats {
	t.Helper()
	stats, err := s.b.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range stats {
		if h.Handler == name {
			return h
		}
	}
	t.Fatalf("no handler %q", name)
	return bus.HandlerStats{}
}

// waitFor polls cond until it holds, or fails the test after 15 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
}

// serve mounts the page of b under /ops/ on a test server.
func serve(t *testing.T, b *bus.Bus, opts ...ops.Option) *httptest.Server {
	t.Helper()
	h, err := ops.Handler(b, opts...)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ops/", http.StripPrefix("/ops", h))
	mux.Handle("/ops", http.StripPrefix("/ops", h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// noRedirect is a client that returns redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// get returns the status and body of a GET.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := noRedirect.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

var tokenRE = regexp.MustCompile(`name="token" value="([0-9a-f]+)"`)

// token reads the form token from a confirmation page.
func token(t *testing.T, base, id string) string {
	t.Helper()
	code, body := get(t, base+"/ops/confirm?action=replay&id="+id)
	m := tokenRE.FindStringSubmatch(body)
	if code != http.StatusOK || m == nil {
		t.Fatalf("confirmation page: %d, no token:\n%s", code, body)
	}
	return m[1]
}
