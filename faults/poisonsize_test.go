package faults_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/transport"
)

// Fault 5/6 at the size limit: events that Publish accepts fail
// permanently: one of 900 KiB, and the largest event Publish accepts (found
// by publishing smaller and smaller ones until one is accepted: just under
// the 1 MiB default limit, or the server's 1 MB max_payload with the
// headers). Each must be poisoned at once, like any other event, the flow
// goes on, and after the fix a replay delivers them whole. (This found a bug,
// fixed in 98ac1e0 and 2bc8dbf: on NATS such records exceeded max_payload, so
// the events were redelivered forever instead of poisoned.)
func TestLargeEventPoisoned(t *testing.T) {
	eachBackend(t, func(t *testing.T, be *backend) {
		b := be.bus(t)
		c := newTally()
		var fixed atomic.Bool
		if _, err := bus.Subscribe(b, "big.h", c.handler(func(ctx context.Context, e Event, _ int) error {
			if e.Seq < 2 && !fixed.Load() {
				return bus.Permanent(errors.New("declined\nwith a second line"))
			}
			return nil
		})); err != nil {
			t.Fatal(err)
		}
		if err := bus.Publish(ctxFor(t, wait), b, Event{Seq: 0, Pad: strings.Repeat("x", 900<<10)}); err != nil {
			t.Fatalf("publish of a 900 KiB event: %v", err)
		}
		largest := 0
		for pad := 1 << 20; pad > 900<<10; pad -= 64 {
			err := bus.Publish(ctxFor(t, wait), b, Event{Seq: 1, Pad: strings.Repeat("x", pad)})
			if err == nil {
				largest = pad
				break
			}
			if !errors.Is(err, bus.ErrEventTooLarge) && !strings.Contains(err.Error(), "too large") {
				t.Fatalf("publish of a %d-byte event: %v", pad, err)
			}
		}
		if largest == 0 {
			t.Fatal("no event above 900 KiB was accepted")
		}
		begin := time.Now() // the largest was just published
		t.Logf("the largest event accepted has a %d-byte pad", largest)
		publishRange(t, b, 2, 5)
		c.waitDistinct(t, 5, wait, "the small events after the large ones")
		var recs []transport.PoisonRecord
		bustest.Eventually(t, wait, func() bool {
			recs = poisonList(t, b, "big.h")
			return len(recs) >= 2
		}, "the 2 large events poisoned")
		took := time.Since(begin)
		be.settled(t, "big.h")
		for _, r := range recs {
			var e Event
			if err := json.Unmarshal(r.Payload, &e); err != nil || len(e.Pad) < 900<<10 || r.Attempts != 1 || r.Error != "declined\nwith a second line" {
				t.Errorf("record %s: payload of %d bytes (%v), attempts %d, error %q", r.ID, len(r.Payload), err, r.Attempts, r.Error)
			}
			// The record, at the size limit, is read back whole.
			if got, err := b.Poison().Get(ctxFor(t, wait), r.ID); err != nil || string(got.Payload) != string(r.Payload) {
				t.Errorf("Get(%s): %d-byte payload, %v", r.ID, len(got.Payload), err)
			}
		}
		for seq := range 2 {
			if k := c.callsOf(seq); k != 1 {
				t.Errorf("large event %d handled %d times, want 1 (permanent error)", seq, k)
			}
		}
		// Replay after the fix: the records, at the size limit, come back whole.
		fixed.Store(true)
		if n, err := b.Poison().ReplayAll(ctxFor(t, wait), "big.h"); err != nil || n != 2 {
			t.Fatalf("ReplayAll = %d, %v", n, err)
		}
		c.waitFor(t, wait, func() bool { return c.ok[0] > 0 && c.ok[1] > 0 }, "the replayed large events handled")
		for seq, want := range []int{900 << 10, largest} {
			if got := c.padOf(seq); got != want {
				t.Errorf("replayed event %d came back with a %d-byte pad, want %d", seq, got, want)
			}
		}
		f := figures{fault: "5-large-event-poisoned", transport: be.name, handlers: 1, sent: 7, delivered: c.distinct(),
			dups: c.duplicates(), poisoned: len(recs), recover: took}
		f.add("event_pad_bytes", []int{900 << 10, largest})
		f.log(t)
	})
}
