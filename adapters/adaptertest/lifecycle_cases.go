package adaptertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/testkit"
	"github.com/heraldbus/herald/middleware"
	"github.com/heraldbus/herald/transport"
)

// Cases of closing, durability, breaker, dedup and ordering by key.

// inFlight returns a started bus on be, with opts, whose handler name runs
// fn on an event published to it: it returns once fn was called. The bus is
// the case's to close.
func (s *suite) inFlight(t *testing.T, be Backend, name string, fn func(context.Context, Event) error, opts ...bus.Option) *bus.Bus {
	t.Helper()
	b, err := bus.New(append([]bus.Option{bus.WithTransport(be(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	if _, err := bus.Subscribe(b, name, func(ctx context.Context, e Event) error {
		select {
		case started <- struct{}{}:
		default: // a later event (published before Close began)
		}
		return fn(ctx, e)
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(s.ctx(t)); err != nil {
		t.Fatal(err)
	}
	s.publish(t, b, 0, 1, "")
	<-started
	return b
}

func (s *suite) closeDrains(t *testing.T, be Backend) {
	release := make(chan struct{})
	var finished atomic.Bool
	b := s.inFlight(t, be, "close.inflight", func(context.Context, Event) error {
		<-release // a later event is drained too
		finished.Store(true)
		return nil
	})
	closed := make(chan error, 1)
	go func() { closed <- b.Close(s.ctx(t)) }()
	bustest.Eventually(t, s.cfg.timeout, func() bool {
		return errors.Is(bus.Publish(s.ctx(t), b, Event{}), bus.ErrClosed)
	}, "Publish refused while closing")
	close(release)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !finished.Load() {
		t.Error("Close returned before the in-flight handler finished")
	}
	if err := b.Close(s.ctx(t)); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := bus.Publish(s.ctx(t), b, Event{}); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Publish after Close: %v", err)
	}
}

func (s *suite) closeDeadline(t *testing.T, be Backend) {
	b := s.inFlight(t, be, "close.stubborn", func(ctx context.Context, _ Event) error {
		<-ctx.Done()
		return ctx.Err()
	}, fastRetry)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	begin := time.Now()
	// The interrupted event is nacked: on a transport where the bus is its
	// only home (memory) Close reports it as not handled; elsewhere it waits
	// in the broker.
	if err := b.Close(ctx); err != nil && !errors.Is(err, bus.ErrUnhandled) {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("Close took %v with a 50ms deadline", d)
	}
	// The bus is closed (and its transport with it): read the poison records
	// through a new connection to the same broker.
	s.expectNoPoison(t, be, "close.stubborn")
	if !s.cfg.durable {
		return
	}
	// The interrupted event was nacked, not lost: a new instance gets it.
	b2 := s.bus(t, be)
	r := bustest.Record[Event](t, b2, "close.stubborn")
	r.Wait(t, 1, s.cfg.timeout)
}

func (s *suite) durable(t *testing.T, be Backend) {
	if !s.cfg.durable {
		t.Skip("transport is not durable (events live only while a handler of the name runs)")
	}
	b1 := s.bus(t, be)
	s.down(t, b1, "durable.h")
	s.publish(t, b1, 0, 10, "while-down")
	b2 := s.bus(t, be)
	r := bustest.Record[Event](t, b2, "durable.h")
	if got := seqs(t, r.Wait(t, 10, s.cfg.timeout), 10); len(got) != 10 {
		t.Errorf("after coming back the handler got %v", got)
	}
}

func (s *suite) breaker(t *testing.T, be Backend) {
	b := s.bus(t, be)
	var healthy atomic.Bool
	r := testkit.FailUntil[Event](&healthy, errors.New("dependency down"))
	if _, err := bus.Subscribe(b, "mw.breaker", r.Handle, bus.WithRetry(middleware.RetryPolicy{MaxAttempts: 1}),
		bus.WithCircuitBreaker(middleware.BreakerConfig{ConsecutiveFailures: 2, OpenFor: 2 * time.Second})); err != nil {
		t.Fatal(err)
	}
	s.publish(t, b, 0, 6, "")
	// The two failures that tripped it. OpenFor is long enough that no
	// half-open probe runs (and fails, and is poisoned) before the
	// dependency is healthy again, even on a loaded machine.
	s.poison(t, b, "mw.breaker", 2)
	healthy.Store(true)
	// The other four were deferred while it was open: redelivered by the
	// transport and handled once it closed.
	if got := seqs(t, r.Wait(t, 4, s.cfg.timeout), 6); len(got) != 4 {
		t.Errorf("handled %v", got)
	}
	if recs, _ := b.Poison().List(s.ctx(t), "mw.breaker"); len(recs) != 2 {
		t.Errorf("%d poison records, want 2: an open breaker must defer, not poison", len(recs))
	}
}

func (s *suite) dedup(t *testing.T, be Backend) {
	store := middleware.NewMemoryDedup(0)
	b1, b2 := s.bus(t, be), s.bus(t, be)
	var mu sync.Mutex
	handled := map[int]int{}
	for _, b := range []*bus.Bus{b1, b2} {
		if _, err := bus.Subscribe(b, "mw.dedup", func(ctx context.Context, e Event) error {
			mu.Lock()
			handled[e.Seq]++
			mu.Unlock()
			return nil
		}, bus.WithDedup(store, time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	const n = 20
	for i := range n {
		for range 2 { // a publisher retrying after a lost ack
			if err := bus.Publish(s.ctx(t), b1, Event{Seq: i}, bus.WithMessageID(fmt.Sprintf("dedup-%d-%s", i, t.Name()))); err != nil {
				t.Fatal(err)
			}
		}
	}
	marker := bustest.Record[Event](t, b1, "mw.dedup.marker")
	s.publish(t, b1, n, 1, "marker")
	marker.Wait(t, 1, s.cfg.timeout)
	bustest.Eventually(t, s.cfg.timeout, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == n+1
	}, "every event handled")
	// Let deferred duplicates come back and be skipped: the total stays n+1.
	bustest.Eventually(t, s.cfg.timeout, func() bool {
		mu.Lock()
		before := sum(handled)
		mu.Unlock()
		time.Sleep(300 * time.Millisecond) // settle window, then re-read
		mu.Lock()
		defer mu.Unlock()
		return sum(handled) == before
	}, "handling settles")
	mu.Lock()
	defer mu.Unlock()
	for seq, c := range handled {
		if c != 1 {
			t.Errorf("event %d handled %d times", seq, c)
		}
	}
}

func sum(m map[int]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func (s *suite) orderingByKey(t *testing.T, be Backend) {
	b := s.bus(t, be)
	var mu sync.Mutex
	perKey := map[string][]int{}
	var running, peak atomic.Int32
	r := &bustest.Recorder[Event]{Fail: func(ctx context.Context, e Event) error {
		n := running.Add(1)
		defer running.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(2 * time.Millisecond) // work, so that keys overlap
		m, _ := handlers.FromContext(ctx)
		mu.Lock()
		perKey[m.OrderingKey] = append(perKey[m.OrderingKey], e.Seq)
		mu.Unlock()
		return nil
	}}
	if _, err := bus.Subscribe(b, "mw.keyed", r.Handle, bus.WithConcurrency(4), bus.WithOrderingByKey()); err != nil {
		t.Fatal(err)
	}
	const keys, per = 5, 20
	for i := range per {
		for k := range keys {
			if err := bus.Publish(s.ctx(t), b, Event{Seq: i}, bus.WithOrderingKey(fmt.Sprint("k", k))); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.Wait(t, keys*per, s.cfg.timeout)
	mu.Lock()
	defer mu.Unlock()
	for k, seq := range perKey {
		for i, v := range seq {
			if v != i {
				t.Fatalf("key %s out of order: %v", k, seq)
			}
		}
	}
	if peak.Load() < 2 {
		t.Errorf("peak parallelism %d: different keys should run in parallel", peak.Load())
	}
}

// expectNoPoison checks, through a new transport on the broker, that handler
// has no poison records.
func (s *suite) expectNoPoison(t *testing.T, be Backend, handler string) {
	t.Helper()
	tr := s.transport(t, be)
	defer func() { _ = tr.Close() }()
	ps, ok := tr.(transport.PoisonStore)
	if !ok {
		t.Skip("the transport keeps no poison records")
	}
	recs, _, err := ps.ListPoison(s.ctx(t), transport.PoisonQuery{Handler: handler})
	if err != nil {
		t.Fatalf("ListPoison: %v", err)
	}
	if len(recs) != 0 {
		t.Errorf("shutdown poisoned %d events: %+v", len(recs), recs[0])
	}
}
