package faults_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	natsgo "github.com/nats-io/nats.go"

	hnats "github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/transport"
)

// Fault 6: bad input on the wire, published past the bus (nats.go on the
// transport's subject; the memory transport's watermill publisher). Each bad
// message is poisoned at once (one attempt, the handler func never called)
// with a reason that says what is wrong, nothing panics, and good events
// published between them keep flowing. An oversize event is refused at
// publish: bus.Publish gives bus.ErrEventTooLarge, and on NATS a raw 2 MB
// publish is refused by the client (the server's max_payload is 1 MB).
func TestBadInputOnTheWire(t *testing.T) {
	eachBackend(t, func(t *testing.T, be *backend) {
		b := be.bus(t)
		const name = "bad.h"
		c := subscribeTally(t, b, name, nil)
		herald := func(extra ...string) map[string]string {
			h := map[string]string{transport.KeyID: event.NewID(), transport.KeyEvent: eventName, transport.KeyContentType: "application/json"}
			for i := 0; i+1 < len(extra); i += 2 {
				h[extra[i]] = extra[i+1]
			}
			return h
		}
		cases := []struct {
			name    string
			payload []byte
			headers map[string]string
			reason  string
		}{
			{"invalid-json", []byte(`{"seq": "not a number"`), herald(), "malformed payload"},
			{"not-json-at-all", []byte("\x00\xff binary \x01"), herald(), "malformed payload"},
			{"empty-body", nil, herald(), "malformed payload"},
			{"foreign-no-headers", []byte(`{"seq":1}`), nil, "not published by Herald"},
			{"foreign-id-only", []byte(`{"seq":1}`), map[string]string{transport.KeyID: "x-1"}, "no " + transport.KeyEvent},
			{"unknown-event-name", []byte(`{"seq":1}`), herald(transport.KeyEvent, "faults.Unknown"), `carries event "faults.Unknown"`},
			{"malformed-published-at", []byte(`{"seq":1}`), herald(transport.KeyPublishedAt, "yesterday"), "malformed " + transport.KeyPublishedAt},
		}
		good := 0
		publishGood := func() {
			t.Helper()
			publishRange(t, b, good, 1)
			good++
		}
		f := figures{fault: "6-bad-input", transport: be.name, handlers: 1}
		var slowest time.Duration
		for i, tc := range cases {
			publishGood()
			begin := time.Now()
			if err := be.rawPublish(t, eventName, tc.payload, tc.headers); err != nil {
				t.Fatalf("%s: raw publish: %v", tc.name, err)
			}
			recs := waitPoison(t, b, name, i+1)
			took := time.Since(begin)
			slowest = max(slowest, took)
			r := recs[len(recs)-1]
			if !strings.Contains(r.Error, tc.reason) || r.Attempts != 1 || r.Stack != "" || r.Handler != name ||
				string(r.Payload) != string(tc.payload) {
				t.Errorf("%s: record error %q (want it to mention %q), attempts %d (want 1), stack %d bytes, handler %q, payload %q",
					tc.name, r.Error, tc.reason, r.Attempts, len(r.Stack), r.Handler, r.Payload)
			}
			t.Logf("%s: poisoned in %v: %q", tc.name, took.Round(time.Millisecond), r.Error)
		}
		publishGood()

		// Oversize: refused at publish, with a clear error, on both paths.
		big := Event{Seq: 1 << 20, Pad: strings.Repeat("x", 2<<20)}
		err := bus.Publish(ctxFor(t, wait), b, big)
		if !errors.Is(err, bus.ErrEventTooLarge) {
			t.Errorf("bus.Publish of a 2 MB event: %v, want bus.ErrEventTooLarge", err)
		}
		t.Logf("2MB via bus.Publish: %v", err)
		if be.isNATS() {
			raw := fmt.Appendf(nil, `{"seq":%d,"pad":"%s"}`, 1<<20, big.Pad)
			err = be.rawPublish(t, eventName, raw, herald())
			if !errors.Is(err, natsgo.ErrMaxPayload) {
				t.Errorf("raw nats.go publish of 2 MB: %v, want nats.ErrMaxPayload", err)
			}
			t.Logf("2MB raw via nats.go: %v", err)
			// The transport's own publisher refuses it before sending.
			msg := newWatermillMessage(raw, herald())
			msg.SetContext(ctxFor(t, wait))
			tr := be.transport(t).(*hnats.Transport)
			err = tr.Publisher().Publish(eventName, msg)
			if !errors.Is(err, transport.ErrTooLarge) {
				t.Errorf("transport publish of 2 MB: %v, want transport.ErrTooLarge", err)
			}
			t.Logf("2MB raw via the transport's publisher: %v", err)
			_ = tr.Close()
		} // memory's raw oversize publish: TestOversizeRawPublishMemory
		publishGood()

		c.waitFor(t, wait, func() bool {
			for seq := range good {
				if c.ok[seq] == 0 {
					return false
				}
			}
			return true
		}, "every good event handled")
		be.settled(t, name)
		recs := poisonList(t, b, name)
		if len(recs) != len(cases) {
			t.Errorf("%d poison records, want %d", len(recs), len(cases))
		}
		for seq := range good {
			if k := c.callsOf(seq); k != 1 {
				t.Errorf("good event %d: %d calls", seq, k)
			}
		}
		calls, wantCalls := c.totalCalls(), good
		if calls != wantCalls {
			t.Errorf("the handler func was called %d times, want %d: a bad message reached it", calls, wantCalls)
		}
		f.sent = good
		f.delivered = c.distinct()
		f.dups = c.duplicates()
		f.poisoned = len(recs)
		f.recover = slowest
		f.add("bad_on_the_wire", len(cases))
		f.add("refused_at_publish", map[bool]string{true: "bus.Publish,nats.go,transport", false: "bus.Publish"}[be.isNATS()])
		f.log(t)
	})
}

// Fault 6, the 2 MB body on memory: the memory transport's watermill
// publisher (Transport.Publisher, for any watermill code) is the in-process
// "wire". A 2 MB message published on it past the bus must be refused at
// publish or poisoned with a clear reason, as on NATS (where the client
// refuses it: max_payload), so that nothing that works in one process breaks
// after the move to NATS (docs/contract.md).
func TestOversizeRawPublishMemory(t *testing.T) {
	be := memoryBackend(t)
	b := be.bus(t)
	c := subscribeTally(t, b, "bad.big", nil)
	raw := fmt.Appendf(nil, `{"seq":1,"pad":"%s"}`, strings.Repeat("x", 2<<20))
	headers := map[string]string{transport.KeyID: event.NewID(), transport.KeyEvent: eventName}
	err := be.rawPublish(t, eventName, raw, headers)
	publishRange(t, b, 2, 1)
	c.waitFor(t, wait, func() bool { return c.ok[2] > 0 }, "the next event handled")
	recs := poisonList(t, b, "bad.big")
	t.Logf("raw 2 MB publish: %v; handled %v; poison records %d", err, c.has(1), len(recs))
	if err == nil && len(recs) == 0 {
		t.Errorf("a 2 MB raw message was accepted and handled (%v): on NATS it is refused at publish", c.has(1))
	}
}

// Fault 6, the reason's text: a poison record's error and the log line of a
// malformed payload quote the start of the payload. Whatever bytes arrived,
// that text must stay printable, valid UTF-8 on one line, so that logs,
// terminals and JSON consumers are not corrupted by a hostile payload.
func TestBadInputReasonPrintable(t *testing.T) {
	be := memoryBackend(t)
	b := be.bus(t)
	if _, err := bus.Subscribe(b, "bad.text", func(context.Context, Event) error { return nil }); err != nil {
		t.Fatal(err)
	}
	payloads := [][]byte{
		[]byte("\x00\xff binary \x01"),
		[]byte("line one\nInjected: log line\r\n"),
		[]byte(strings.Repeat("a", 63) + "é and more"), // the cut at 64 bytes splits é
	}
	for _, p := range payloads {
		if err := be.rawPublish(t, eventName, p, map[string]string{transport.KeyID: event.NewID(), transport.KeyEvent: eventName}); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range waitPoison(t, b, "bad.text", len(payloads)) {
		if !utf8.ValidString(r.Error) || strings.ContainsFunc(r.Error, unicode.IsControl) {
			t.Errorf("reason not printable: %q", r.Error)
		}
	}
}
