package bus_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald/adapters/memory"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/middleware"
)

type ping struct{ N int }
type pong struct{ N int }

func newMemBus(t *testing.T, buffer int, opts ...bus.Option) *bus.Bus {
	t.Helper()
	b, err := bus.New(append([]bus.Option{bus.WithTransport(memory.New(memory.WithBufferSize(buffer)))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// start starts b, publishes the events given and returns a ctx that ends
// after timeout.
func start(t *testing.T, b *bus.Bus, timeout time.Duration, events ...ping) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if err := bus.Publish(ctx, b, e); err != nil {
			t.Fatal(err)
		}
	}
	return ctx
}

// await waits for ch to be closed, failing t with what if ctx ends first.
func await(t *testing.T, ctx context.Context, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-ctx.Done():
		t.Fatal(what)
	}
}

// answerTwice returns a handler that calls count, then publishes two events,
// answer(e, 0) and answer(e, 1), for each event e it gets.
func answerTwice[In, Out any](b *bus.Bus, count func(), answer func(e In, i int) Out) func(context.Context, In) error {
	return func(ctx context.Context, e In) error {
		count()
		for i := range 2 {
			if err := bus.Publish(ctx, b, answer(e, i)); err != nil {
				return err
			}
		}
		return nil
	}
}

// Two handlers publishing to each other with a buffer of 1 fill each other's
// queues and wait on each other. Close with no deadline must still return:
// the shutdown timeout bounds its drain, the handlers' ctx is then cancelled,
// their publishes return, and the events left are reported.
func TestCloseEndsAPublishCycle(t *testing.T) {
	b := newMemBus(t, 1, bus.WithShutdownTimeout(300*time.Millisecond))
	var handled atomic.Int64
	busy := make(chan struct{}) // closed once the cycle has gone round a few times
	count := func() {
		if handled.Add(1) == 4 {
			close(busy)
		}
	}
	if _, err := bus.Subscribe(b, "pinger", answerTwice(b, count, func(e ping, i int) pong { return pong{N: e.N + i} })); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Subscribe(b, "ponger", answerTwice(b, count, func(e pong, i int) ping { return ping{N: e.N + i} })); err != nil {
		t.Fatal(err)
	}
	ctx := start(t, b, 10*time.Second, ping{})
	// Each event makes two: with a buffer of 1 the handlers soon wait on
	// each other's full queues, for good.
	await(t, ctx, busy, "the cycle never started")
	done := make(chan error, 1)
	go func() { done <- b.Close(context.Background()) }()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, bus.ErrUnhandled) {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close(context.Background()) never returned from a publish cycle")
	}
}

// A handler that defers an event (nacked for redelivery) with a buffer of 1:
// the nack holds no worker, so Close neither waits for the redelivery delay
// nor reports a handler still running; the drain handles the event when it
// comes back.
func TestCloseAfterANackIsPrompt(t *testing.T) {
	b := newMemBus(t, 1)
	var calls atomic.Int32
	first, handled := make(chan struct{}), make(chan struct{})
	if _, err := bus.Subscribe(b, "once.deferred", func(ctx context.Context, e ping) error {
		if calls.Add(1) == 1 {
			close(first)
			return middleware.Defer(errors.New("later"))
		}
		close(handled)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx := start(t, b, 5*time.Second, ping{})
	await(t, ctx, first, "handler never called")
	if err := b.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-handled:
	default:
		t.Error("Close returned before the deferred event came back and was handled")
	}
}

// A Publish waiting for room in a full queue when Close drops that queue
// (its drain ended with its ctx) did not get its event queued: it must return
// an error, never nil.
func TestPublishBlockedWhenCloseDropsTheQueue(t *testing.T) {
	b := newMemBus(t, 1)
	started := make(chan struct{}, 1)
	if _, err := bus.Subscribe(b, "stuck", func(ctx context.Context, e ping) error {
		select {
		case started <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	ctx := start(t, b, 10*time.Second, ping{N: 1}) // in flight
	<-started
	if err := bus.Publish(ctx, b, ping{N: 2}); err != nil { // queued
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() { blocked <- bus.Publish(ctx, b, ping{N: 3}) }() // waits for room
	cctx, ccancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer ccancel()
	if err := b.Close(cctx); !errors.Is(err, bus.ErrUnhandled) {
		t.Errorf("Close: %v, want ErrUnhandled (two events not handled)", err)
	}
	select {
	case err := <-blocked:
		if err == nil {
			t.Error("a Publish whose event was never queued returned nil")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the blocked Publish never returned")
	}
}
