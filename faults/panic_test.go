package faults_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldbus/herald/bus"
)

// Fault 7: a handler panics on 10 of 100 events (a string, an error, and
// panic(nil)). Each panic is recovered and counted as a failure: retried,
// then poisoned with the stack. The other 90 events succeed on the same
// workers, the number of goroutines while the bus runs comes back to what it
// was before the panics, and after Close nothing is left (goleak against a
// snapshot taken before the test).
func TestHandlerPanic(t *testing.T) {
	for _, mk := range []struct {
		name string
		be   func(t testing.TB) *backend
	}{
		{"memory", func(t testing.TB) *backend { return memoryBackend(t) }},
		{"nats", func(t testing.TB) *backend { return natsBackend(t) }},
	} {
		t.Run(mk.name, func(t *testing.T) {
			before := goleak.IgnoreCurrent()
			t.Run("panics", func(t *testing.T) { panics(t, mk.be(t)) })
			goleak.VerifyNone(t, before)
		})
	}
}

func panics(t *testing.T, be *backend) {
	b := be.bus(t)
	const n, name = 100, "panic.h"
	bad := func(seq int) bool { return seq%10 == 0 }
	c := newTally()
	if _, err := bus.Subscribe(b, name, c.handler(func(ctx context.Context, e Event, _ int) error {
		if !bad(e.Seq) {
			return nil
		}
		switch e.Seq {
		case 10:
			panic(fmt.Errorf("handler bug on seq %d", e.Seq))
		case 20:
			panic(nil)
		default:
			s := make([]int, e.Seq%7)
			s[e.Seq]++ // index out of range: a runtime panic
		}
		return nil
	}), bus.WithConcurrency(2)); err != nil {
		t.Fatal(err)
	}
	// Steady state before any panic: the bus and its workers are running.
	publishRange(t, b, 1, 9)
	c.waitDistinct(t, 9, wait, "warm-up events")
	be.settled(t, name)      // opens the NATS inspection connection
	_ = poisonList(t, b, "") // and lists once, as the test does later
	baseline := runtime.NumGoroutine()

	begin := time.Now()
	publishRange(t, b, 10, n-10)
	publishRange(t, b, 0, 1)
	const nbad = n / 10
	recs := waitPoison(t, b, name, nbad)
	c.waitDistinct(t, n-nbad, wait, "the events that do not panic")
	took := time.Since(begin)
	be.settled(t, name)
	var now int
	deadline := time.Now().Add(10 * time.Second)
	for now = runtime.NumGoroutine(); now > baseline && time.Now().Before(deadline); now = runtime.NumGoroutine() {
		time.Sleep(10 * time.Millisecond) // polling a count, not synchronisation
	}
	if now > baseline {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines 10s after the panics, %d before them:\n%s", now, baseline, buf[:runtime.Stack(buf, true)])
	}

	for _, r := range recs {
		var e Event
		_ = json.Unmarshal(r.Payload, &e)
		if !bad(e.Seq) || !strings.Contains(r.Error, "handler panicked") || r.Attempts != fastRetry.MaxAttempts ||
			!strings.Contains(r.Stack, "panic") || !strings.Contains(r.Stack, "faults_test.panics") {
			t.Errorf("record for seq %d: error %q, attempts %d, stack:\n%s", e.Seq, r.Error, r.Attempts, r.Stack)
		}
		if e.Seq == 10 && !strings.Contains(r.Error, "handler bug on seq 10") {
			t.Errorf("the panic's error value is not in the record: %q", r.Error)
		}
		if e.Seq == 20 && !strings.Contains(r.Error, "nil") {
			t.Errorf("panic(nil) record: %q", r.Error)
		}
	}
	if len(recs) != nbad {
		t.Errorf("%d poison records, want %d", len(recs), nbad)
	}
	for seq := range n {
		if want := map[bool]int{true: fastRetry.MaxAttempts, false: 1}[bad(seq)]; c.callsOf(seq) != want {
			t.Errorf("seq %d: %d calls, want %d", seq, c.callsOf(seq), want)
		}
	}
	f := figures{fault: "7-handler-panic", transport: be.name, handlers: 1, sent: n, delivered: c.distinct(),
		dups: c.duplicates(), poisoned: len(recs), recover: took}
	f.add("panicking", nbad)
	f.add("goroutines_before", baseline)
	f.add("goroutines_after", now)
	f.log(t)
}
