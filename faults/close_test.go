package faults_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
)

// closeWithin closes b with a ctx of d and fails t if Close takes longer
// than d plus slack. It returns how long Close took and its error.
func closeWithin(t testing.TB, b *bus.Bus, d, slack time.Duration) (time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	begin := time.Now()
	err := b.Close(ctx)
	took := time.Since(begin)
	if took > d+slack {
		t.Errorf("Close took %v with a %v deadline (allowed slack %v)", took, d, slack)
	}
	return took, err
}

// closeSlack is what Close may take beyond its ctx: the bus's stop grace
// (100ms) for handlers to return once cancelled, and the transport's close.
const closeSlack = time.Second

// Fault 9: Close with 200 events in flight (published, not yet handled: in
// handlers, prefetched, queued), twice: with handlers that finish within
// Close's ctx (20ms each), and with handlers that do not (5s each, honouring
// their ctx). Close returns within its ctx (plus the 100ms grace for
// cancelled handlers) and poisons nothing.
//
// NATS: a new bus with the same handler name on the same server then handles
// every event the first did not, interrupted ones included: together they
// handle all 200.
//
// Memory: events live with the process. What Close promises, and what is
// tested: handlers that finish within Close's ctx are not cancelled, those
// that do not are cancelled and not poisoned, Publish returns transport.ErrClosed, and
// the events still queued are dropped with the handler's queue: a new bus with
// the same handler name gets only new events.
func TestCloseWithEventsInFlight(t *testing.T) {
	eachBackend(t, func(t *testing.T, be *backend) {
		t.Run("finish", func(t *testing.T) { closeInFlight(t, be, "finish", 20*time.Millisecond) })
		t.Run("interrupt", func(t *testing.T) { closeInFlight(t, be, "interrupt", 5*time.Second) })
	})
}

func closeInFlight(t *testing.T, be *backend, variant string, work time.Duration) {
	name := "close." + variant
	const n, conc = 200, 4
	const closeCtx = 300 * time.Millisecond
	first, _ := be.unstartedBus(t)
	a := newTally()
	var interrupted atomic.Int32
	if _, err := bus.Subscribe(first, name, a.handler(func(ctx context.Context, e Event, _ int) error {
		select {
		case <-time.After(work): // the handler's work
			return nil
		case <-ctx.Done():
			interrupted.Add(1)
			return ctx.Err()
		}
	}), bus.WithConcurrency(conc)); err != nil {
		t.Fatal(err)
	}
	if err := first.Start(ctxFor(t, wait)); err != nil {
		t.Fatal(err)
	}
	pub := first
	if be.isNATS() {
		pub = be.bus(t) // another process publishes, and outlives the first
	}
	publishBatch(t, pub, 0, n)
	if work < closeCtx {
		a.waitDistinct(t, 20, wait, "the first bus is handling")
	} else {
		bustest.Eventually(t, wait, func() bool { return a.totalCalls() == conc }, "%d handlers running", conc)
	}
	took, err := closeWithin(t, first, closeCtx, closeSlack)
	handledByFirst := a.distinct()
	switch {
	case err == nil:
		if !be.isNATS() && handledByFirst != n {
			t.Errorf("Close returned nil with %d of %d events handled", handledByFirst, n)
		}
	case be.isNATS() || !errors.Is(err, bus.ErrUnhandled):
		t.Errorf("Close: %v", err)
	case !strings.Contains(err.Error(), fmt.Sprintf(" %d events", n-handledByFirst)):
		// Memory: the error counts exactly the events not handled.
		t.Errorf("Close: %v, want it to count %d events not handled", err, n-handledByFirst)
	}
	if err := bus.Publish(ctxFor(t, wait), first, Event{Seq: n}); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Publish after Close: %v, want transport.ErrClosed", err)
	}
	poisoned := len(poisonList(t, pub, "")) // memory: the closed bus's store is still readable
	if poisoned != 0 {
		t.Errorf("Close poisoned %d events", poisoned)
	}
	wantInterrupted := 0
	if work >= closeCtx {
		wantInterrupted = conc
	}
	if be.isNATS() && int(interrupted.Load()) != wantInterrupted {
		t.Errorf("%d handlers were cancelled, want %d", interrupted.Load(), wantInterrupted)
	}

	f := figures{fault: "9-close-in-flight-" + variant, transport: be.name, handlers: 1, sent: n, poisoned: poisoned}
	f.add("in_flight_at_close", n-handledByFirst)
	f.add("close_ctx", closeCtx)
	f.add("close_took", took)
	f.add("interrupted", interrupted.Load())

	if !be.isNATS() {
		// The process is gone, and its queue with it: a new bus with the
		// same handler name starts from new events.
		second := be.bus(t)
		c := subscribeTally(t, second, name, nil)
		publishRange(t, second, n, 1)
		c.waitDistinct(t, 1, wait, "the new bus got the new event")
		if c.totalCalls() != 1 {
			t.Errorf("the new bus got %d events, want only the new one", c.totalCalls())
		}
		f.delivered, f.dups = handledByFirst, a.duplicates()
		f.add("reported_not_handled", n-handledByFirst)
		f.log(t)
		return
	}

	// NATS: the events in flight come back to the next process.
	second := be.bus(t)
	b2 := newTally()
	restart := time.Now()
	if _, err := bus.Subscribe(second, name, b2.handler(nil), bus.WithConcurrency(conc)); err != nil {
		t.Fatal(err)
	}
	b2.waitFor(t, wait, func() bool {
		for seq := range n {
			if b2.ok[seq] == 0 && !a.has(seq) {
				return false
			}
		}
		return true
	}, "the two buses together handled every event")
	f.recover = time.Since(restart)
	be.settled(t, name)
	both := 0
	for seq := range n {
		if a.has(seq) && b2.has(seq) {
			both++
		}
	}
	f.delivered = n
	f.dups = a.duplicates() + b2.duplicates() + both
	f.poisoned = len(poisonList(t, second, ""))
	f.add("handled_by_second", b2.distinct())
	f.log(t)
	if f.poisoned != 0 {
		t.Errorf("%d poison records", f.poisoned)
	}
	a.check(t, n, "first")
	b2.check(t, n, "second")
}

// Fault 10: Close while the NATS server is down, with a handler in flight and
// a Publish waiting. Close returns within its deadline, the Publish returns
// an error within its ctx, the event in flight is handled by the next process
// once the server is back, and no goroutine is left (goleak against a
// snapshot taken before the test).
func TestCloseWhileNATSDown(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Run("down", func(t *testing.T) {
		be := natsBackend(t)
		b, _ := be.unstartedBus(t)
		c := newTally()
		var entered atomic.Int32
		if _, err := bus.Subscribe(b, "down.h", c.handler(func(ctx context.Context, e Event, _ int) error {
			if e.Seq < 10 {
				return nil
			}
			entered.Add(1)
			<-ctx.Done() // in flight when the server goes
			return ctx.Err()
		})); err != nil {
			t.Fatal(err)
		}
		if err := b.Start(ctxFor(t, wait)); err != nil {
			t.Fatal(err)
		}
		publishRange(t, b, 0, 11)
		c.waitDistinct(t, 10, wait, "events handled before the outage")
		bustest.Eventually(t, wait, func() bool { return entered.Load() > 0 }, "a handler in flight")

		down := time.Now()
		be.srv.Shutdown()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		pubErr := bus.Publish(ctx, b, Event{Seq: 11})
		cancel()
		if pubErr == nil {
			t.Errorf("Publish with the server down returned nil")
		}
		if d := time.Since(down); d > time.Second+closeSlack {
			t.Errorf("Publish with the server down took %v with a 1s ctx", d)
		}
		took, err := closeWithin(t, b, 2*time.Second, closeSlack)
		if err != nil {
			t.Logf("Close: %v", err)
		}

		// Nothing is lost: the event in flight when the server went (its
		// nack could not be sent) comes back to the next process once the
		// server is back, after AckWait.
		if err := be.srv.Restart(); err != nil {
			t.Fatal(err)
		}
		back := time.Now()
		next := be.bus(t)
		c2 := newTally()
		if _, err := bus.Subscribe(next, "down.h", c2.handler(nil)); err != nil {
			t.Fatal(err)
		}
		c2.waitFor(t, wait, func() bool { return c2.ok[10] > 0 }, "the event in flight at the outage is handled after it")
		f := figures{fault: "10-close-nats-down", transport: "nats", handlers: 1, sent: 11, delivered: c.distinct() + 1,
			dups: c.duplicates() + c2.duplicates(), poisoned: len(poisonList(t, next, "")), recover: time.Since(back)}
		f.add("close_ctx", 2*time.Second)
		f.add("close_took", took)
		f.add("close_err", fmt.Sprintf("%q", errText(err)))
		f.add("publish_err", fmt.Sprintf("%q", errText(pubErr)))
		f.log(t)
	})
	goleak.VerifyNone(t, before)
}

func errText(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}
