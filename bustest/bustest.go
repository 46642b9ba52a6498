// Package bustest helps test code that uses Herald: a started bus that closes
// itself when the test ends, a handler that records what it receives, and waits
// with deadlines instead of sleeps.
//
//	b := bustest.New(t)
//	rec := bustest.Record[OrderPlaced](t, b, "billing")
//	_ = bus.Publish(ctx, b, OrderPlaced{ID: "o-1"})
//	got := rec.Wait(t, 1, 5*time.Second)
package bustest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/notify"
)

// DefaultTimeout is the deadline of the waits in this package that take none.
const DefaultTimeout = 10 * time.Second

// Context returns a context that ends after timeout, or when the test ends:
// the deadline of one test's calls.
func Context(t testing.TB, timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// New returns a started bus built with opts (the memory transport unless opts
// say otherwise). It is closed when the test ends, with a DefaultTimeout
// deadline; a failed Close fails the test.
func New(t testing.TB, opts ...bus.Option) *bus.Bus {
	t.Helper()
	b, err := bus.New(opts...)
	if err != nil {
		t.Fatalf("bustest: bus.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("bustest: Close: %v", err)
		}
	})
	if err := b.Start(context.Background()); err != nil {
		t.Fatalf("bustest: Start: %v", err)
	}
	return b
}

// Recorder is a handler that records the events it receives and their
// metadata. It is safe for concurrent use. The zero value is ready to use.
type Recorder[E any] struct {
	mu      sync.Mutex
	events  []E
	meta    []handlers.Metadata
	changed notify.Changed
	// Fail, if set, is called before an event is recorded; a non-nil error is
	// returned to the bus and the event is not recorded.
	Fail func(ctx context.Context, e E) error
}

// Record subscribes a new Recorder to b as the handler name and returns it. It
// fails the test if Subscribe fails.
func Record[E any](t testing.TB, b *bus.Bus, name string, opts ...bus.SubscribeOption) *Recorder[E] {
	t.Helper()
	r := &Recorder[E]{}
	if _, err := bus.Subscribe(b, name, r.Handle, opts...); err != nil {
		t.Fatalf("bustest: Subscribe %q: %v", name, err)
	}
	return r
}

// Handle is the handler func: it records e and the metadata in ctx.
func (r *Recorder[E]) Handle(ctx context.Context, e E) error {
	if r.Fail != nil {
		if err := r.Fail(ctx, e); err != nil {
			return err
		}
	}
	m, _ := handlers.FromContext(ctx)
	r.mu.Lock()
	r.events = append(r.events, e)
	r.meta = append(r.meta, m)
	r.changed.Broadcast()
	r.mu.Unlock()
	return nil
}

// Len returns how many events were recorded.
func (r *Recorder[E]) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// Events returns a copy of the recorded events, in arrival order.
func (r *Recorder[E]) Events() []E {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]E(nil), r.events...)
}

// Metadata returns a copy of the recorded events' metadata, in arrival order.
func (r *Recorder[E]) Metadata() []handlers.Metadata {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]handlers.Metadata(nil), r.meta...)
}

// WaitFor waits until at least n events were recorded or ctx ends, and returns
// the events recorded then with ctx's error, if any.
func (r *Recorder[E]) WaitFor(ctx context.Context, n int) ([]E, error) {
	if !r.changed.Wait(&r.mu, func() bool { return len(r.events) >= n }, ctx.Done()) {
		return r.Events(), ctx.Err()
	}
	return r.Events(), nil
}

// Wait waits up to timeout for at least n events and returns them; it fails
// the test (t.Fatalf) when the deadline passes first.
func (r *Recorder[E]) Wait(t testing.TB, n int, timeout time.Duration) []E {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ev, err := r.WaitFor(ctx, n)
	if err != nil {
		t.Fatalf("bustest: got %d of %d events of %T within %v", len(ev), n, *new(E), timeout)
	}
	return ev
}

// Eventually polls cond until it returns true, failing the test with msg if
// that has not happened within timeout. Use it for conditions no recorder
// signals (a poison record appearing, a counter reaching a value).
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bustest: condition not met within %v: "+msg, append([]any{timeout}, args...)...)
		}
		time.Sleep(wait) // polling interval, not synchronisation: cond decides
	}
}
