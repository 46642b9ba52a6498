package adaptertest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/middleware"
	"github.com/heraldbus/herald/transport"
)

// Delivery tracking (bus.WithTracking) and request/reply (bus.Handle,
// bus.Request).

func trackCases(s *suite) []testCase {
	return []testCase{
		{"TrackingStates", "tracking: Track reports each handler's delivery queued (at once in the publishing process), running, retrying (with the attempt and the error), then done, with its times", s.trackStates},
		{"TrackingPoisoned", "tracking: a delivery that fails for good ends poisoned, with its attempt and error", s.trackPoisoned},
		{"TrackingAcrossProcesses", "tracking: on a transport that keeps tracking records (transport.Tracker), a bus sees the deliveries other processes handle", s.trackAcross},
		{"RequestReply", "request/reply: a request reaches one handler of its type, on its bus or another, and returns its answer; replicas of a handler name share the requests", s.requestReply},
		{"RequestErrors", "request/reply: a handler's error or panic reaches the caller as a RemoteError with its message only; no handler is ErrNoResponder; the caller's deadline is context.DeadlineExceeded; a transport without request/reply says errors.ErrUnsupported", s.requestErrors},
	}
}

// trackOf waits until b's Track reports handler's delivery of id in state at
// attempt, and returns it.
func (s *suite) trackOf(t *testing.T, b *bus.Bus, id, handler string, state bus.DeliveryState, attempt int) bus.Delivery {
	t.Helper()
	var last bus.Tracking
	var lastErr error
	var d bus.Delivery
	bustest.Eventually(t, s.cfg.timeout, func() bool {
		last, lastErr = b.Track(context.Background(), id)
		for _, h := range last.Handlers {
			if h.Handler == handler {
				d = h
				return h.State == state && h.Attempt == attempt
			}
		}
		return false
	}, "Track(%q): %s %v at attempt %d (last: %+v, %v)", id, handler, state, attempt, last, lastErr)
	return d
}

// holdRedeliveries holds a delivery that ends in a delayed retry, after its
// records are written and before it is nacked, until proceed.
func holdRedeliveries(steps chan<- string, proceed <-chan struct{}) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			var re *middleware.RedeliveryError
			if errors.As(err, &re) {
				steps <- "failed"
				<-proceed
			}
			return out, err
		}
	}
}

func (s *suite) trackStates(t *testing.T, be Backend) {
	steps := make(chan string)
	proceed := make(chan struct{})
	b := s.bus(t, be, bus.WithTracking(time.Minute), bus.WithMiddleware(holdRedeliveries(steps, proceed)))
	// A delayed retry where the transport counts deliveries (the failed
	// delivery is held in retrying); otherwise in process, a second apart.
	policy := middleware.RetryPolicy{MaxAttempts: 3, ImmediateAttempts: 1, RedeliveryDelay: 10 * time.Millisecond,
		InitialInterval: time.Second, MaxInterval: time.Second, Jitter: -1}
	const handler = "track.worker"
	if _, err := bus.Subscribe(b, handler, func(ctx context.Context, e Event) error {
		meta, _ := handlers.FromContext(ctx)
		steps <- meta.ID
		<-proceed
		if e.Tag == "flaky" && meta.Attempt == 1 {
			return errors.New("flaky failure")
		}
		return nil
	}, bus.WithRetry(policy)); err != nil {
		t.Fatal(err)
	}
	ctx := s.ctx(t)
	id := "track/" + strings.Repeat("é~ ", 3) + t.Name() // an ID no subject or key could hold as it is
	if _, err := b.Track(ctx, id); !errors.Is(err, bus.ErrUnknownEvent) {
		t.Fatalf("Track before publish: %v, want ErrUnknownEvent", err)
	}
	// The first event holds the worker: the second stays queued meanwhile.
	if err := bus.Publish(ctx, b, Event{Tag: "first"}, bus.WithMessageID(id+"-first")); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, steps, s.cfg.timeout, "the first event"); got != id+"-first" {
		t.Fatalf("handler got %q", got)
	}
	if err := bus.Publish(ctx, b, Event{Tag: "flaky"}, bus.WithMessageID(id)); err != nil {
		t.Fatal(err)
	}
	// The publishing process reads its own writes: queued at once.
	if tr, err := b.Track(ctx, id); err != nil || len(tr.Handlers) != 1 || tr.Handlers[0].State != bus.StateQueued {
		t.Fatalf("Track right after Publish: %+v, %v", tr, err)
	}
	q := s.trackOf(t, b, id, handler, bus.StateQueued, 0)
	if q.Event != "adaptertest.Event" || q.Queued.IsZero() || !q.Started.IsZero() {
		t.Fatalf("queued: %+v", q)
	}
	proceed <- struct{}{}
	if got := recv(t, steps, s.cfg.timeout, "attempt 1"); got != id {
		t.Fatalf("handler got %q", got)
	}
	run := s.trackOf(t, b, id, handler, bus.StateRunning, 1)
	if run.Started.IsZero() || run.Started.Before(run.Queued) {
		t.Fatalf("running: %+v", run)
	}
	proceed <- struct{}{} // attempt 1 fails
	redelivered := recv(t, steps, s.cfg.timeout, "the failure, or attempt 2") == "failed"
	if d := s.trackOf(t, b, id, handler, bus.StateRetrying, 1); d.LastError != "flaky failure" {
		t.Fatalf("retrying: %+v", d)
	}
	if redelivered {
		proceed <- struct{}{}
		recv(t, steps, s.cfg.timeout, "attempt 2")
	}
	s.trackOf(t, b, id, handler, bus.StateRunning, 2)
	proceed <- struct{}{}
	d := s.trackOf(t, b, id, handler, bus.StateDone, 2)
	if d.LastError != "flaky failure" || !d.Started.Equal(run.Started) || d.Finished.Before(d.Started) || d.Updated.Before(d.Started) {
		t.Fatalf("done: %+v (first attempt started %v)", d, run.Started)
	}
	tr, err := b.Track(ctx, id)
	if err != nil || !tr.Finished() || tr.EventID != id || len(tr.Handlers) != 1 {
		t.Fatalf("Track: %+v, %v", tr, err)
	}
}

func (s *suite) trackPoisoned(t *testing.T, be Backend) {
	b := s.bus(t, be, bus.WithTracking(time.Minute))
	if _, err := bus.Subscribe(b, "track.strict", func(ctx context.Context, e Event) error {
		return bus.Permanent(errors.New("cannot do " + e.Tag))
	}); err != nil {
		t.Fatal(err)
	}
	ok := bustest.Record[Event](t, b, "track.easy")
	if err := bus.Publish(s.ctx(t), b, Event{Tag: "this"}, bus.WithMessageID("poisoned-1")); err != nil {
		t.Fatal(err)
	}
	ok.Wait(t, 1, s.cfg.timeout)
	d := s.trackOf(t, b, "poisoned-1", "track.strict", bus.StatePoisoned, 1)
	if d.LastError != "cannot do this" || d.Finished.IsZero() {
		t.Fatalf("poisoned: %+v", d)
	}
	s.trackOf(t, b, "poisoned-1", "track.easy", bus.StateDone, 1)
	s.poison(t, b, "track.strict", 1)
}

func (s *suite) trackAcross(t *testing.T, be Backend) {
	probe := be(t)
	_, shared := probe.(transport.Tracker)
	_ = probe.Close()
	if !shared {
		t.Skip("the transport keeps no tracking records (no transport.Tracker): each bus tracks what it publishes and handles")
	}
	pub := s.bus(t, be, bus.WithTracking(time.Minute))
	worker := s.bus(t, be, bus.WithTracking(time.Minute))
	r := bustest.Record[Event](t, worker, "track.remote")
	if err := bus.Publish(s.ctx(t), pub, Event{Tag: "x"}, bus.WithMessageID("across-1")); err != nil {
		t.Fatal(err)
	}
	r.Wait(t, 1, s.cfg.timeout)
	d := s.trackOf(t, pub, "across-1", "track.remote", bus.StateDone, 1)
	if d.Queued.IsZero() || d.Started.IsZero() || d.Finished.IsZero() {
		t.Fatalf("across: %+v", d)
	}
}

// Quote is the request type of the request/reply cases; Price the answer.
type Quote struct {
	SKU string `json:"sku"`
}

// Price answers a Quote.
type Price struct {
	SKU     string `json:"sku"`
	Cents   int    `json:"cents"`
	Replica int    `json:"replica"`
}

// unsupported checks that a transport without request/reply says so with
// errors.ErrUnsupported, and reports whether it has it.
func (s *suite) supportsRequests(t *testing.T, be Backend) bool {
	probe := be(t)
	_, ok := probe.(transport.Requester)
	_ = probe.Close()
	if ok {
		return true
	}
	b := s.bus(t, be)
	if _, err := bus.Handle(b, "rr.none", func(context.Context, Quote) (Price, error) { return Price{}, nil }); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Handle without transport.Requester: %v, want errors.ErrUnsupported", err)
	}
	if _, err := bus.Request[Quote, Price](s.ctx(t), b, Quote{}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Request without transport.Requester: %v, want errors.ErrUnsupported", err)
	}
	return false
}

func (s *suite) requestReply(t *testing.T, be Backend) {
	if !s.supportsRequests(t, be) {
		t.Skip("the transport has no request/reply (no transport.Requester): Handle and Request say errors.ErrUnsupported")
	}
	client := s.bus(t, be)
	var mu sync.Mutex
	served := map[int]int{}
	for i := range 2 {
		b := s.bus(t, be)
		if _, err := bus.Handle(b, "rr.pricing", func(ctx context.Context, q Quote) (Price, error) {
			if _, ok := handlers.FromContext(ctx); !ok {
				return Price{}, errors.New("no delivery metadata in ctx")
			}
			mu.Lock()
			served[i]++
			mu.Unlock()
			return Price{SKU: q.SKU, Cents: 100 * len(q.SKU), Replica: i}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	const n = 40
	for i := range n {
		sku := strings.Repeat("x", i+1)
		p, err := bus.Request[Quote, Price](s.ctx(t), client, Quote{SKU: sku})
		if err != nil || p.SKU != sku || p.Cents != 100*len(sku) {
			t.Fatalf("request %d: %+v, %v", i, p, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if served[0]+served[1] != n || served[0] == 0 || served[1] == 0 {
		t.Errorf("replicas answered %v of %d requests: each request once, shared by both", served, n)
	}
}

func (s *suite) requestErrors(t *testing.T, be Backend) {
	if !s.supportsRequests(t, be) {
		return // checked: errors.ErrUnsupported
	}
	b := s.bus(t, be)
	ctx := s.ctx(t)
	if _, err := bus.Request[Quote, Price](ctx, b, Quote{}); !errors.Is(err, bus.ErrNoResponder) {
		t.Fatalf("no handler: %v, want ErrNoResponder", err)
	}
	if _, err := bus.Handle(b, "rr.failing", func(ctx context.Context, q Quote) (Price, error) {
		switch q.SKU {
		case "panic":
			panic("price list missing")
		case "slow":
			<-ctx.Done() // the caller's deadline travels with the request
			return Price{}, ctx.Err()
		}
		return Price{}, fmt.Errorf("no price for %s\nsecond line", q.SKU)
	}, bus.WithConcurrency(2)); err != nil {
		t.Fatal(err)
	}
	var re *bus.RemoteError
	_, err := bus.Request[Quote, Price](ctx, b, Quote{SKU: "x1"})
	if !errors.As(err, &re) || re.Handler != "rr.failing" || re.Message != "no price for x1 second line" {
		t.Fatalf("handler error: %#v, want a RemoteError with the message", err)
	}
	_, err = bus.Request[Quote, Price](ctx, b, Quote{SKU: "panic"})
	if !errors.As(err, &re) || !strings.Contains(re.Message, "panicked: price list missing") || strings.Contains(re.Message, "goroutine") {
		t.Fatalf("panic: %#v, want a RemoteError without a stack", err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = bus.Request[Quote, Price](short, b, Quote{SKU: "slow"})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > s.cfg.timeout/2 {
		t.Fatalf("deadline: %v after %v, want context.DeadlineExceeded", err, time.Since(start))
	}
}
