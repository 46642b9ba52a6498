package nats_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/transport"
)

// A message published on the subject by a foreign publisher (nats.go, no
// Herald headers) is poisoned at once, with a reason that says so.
func TestRawNATSMessagePoisoned(t *testing.T) {
	eachBroker(t, func(t *testing.T, b broker) {
		tr := b.transport(t)
		bb := bustest.New(t, bus.WithTransport(tr))
		var calls atomic.Int32
		if _, err := bus.Subscribe(bb, "billing.charge-card", func(ctx context.Context, e OrderPlaced) error {
			calls.Add(1)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		publishForeign(t, b, tr, `{"id":"raw","seq":1}`, nil)
		rec := waitPoison(t, bb, "billing.charge-card", 1)[0]
		if !strings.Contains(rec.Error, "not published by Herald") || rec.Attempts != 1 || string(rec.Payload) != `{"id":"raw","seq":1}` {
			t.Errorf("record: error %q, attempts %d, payload %q", rec.Error, rec.Attempts, rec.Payload)
		}
		if calls.Load() != 0 {
			t.Errorf("the handler was called %d times for a foreign message", calls.Load())
		}
	})
}

// The transport is the bus's poison store: records survive in their stream,
// keep multi-line stacks, and are listed per handler in order.
func TestPoisonStore(t *testing.T) {
	eachBroker(t, func(t *testing.T, b broker) {
		ctx := testCtx(t)
		tr := b.transport(t)
		now := time.Now().UTC().Truncate(time.Millisecond)
		var ids []string
		put := func(handler string) string {
			rec := transport.PoisonRecord{
				ID: event.NewID(), Handler: handler, Payload: []byte(`{"a":1}`),
				Error: "boom\nsecond line", Stack: "goroutine 1:\nmain.main()\n\tmain.go:1",
				Attempts: 3, FirstFailure: now, LastFailure: now,
				Event: transport.Event{ID: "e-" + handler, Name: "herald_test.OrderPlaced"},
			}
			if err := tr.PutPoison(ctx, rec); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, rec.ID)
			return rec.ID
		}
		for _, h := range []string{"billing.charge-card", "a.b", "a_b", "billing.charge-card", "a.b"} {
			put(h)
		}
		// A record larger than max_payload is stored in parts.
		huge := transport.PoisonRecord{ID: event.NewID(), Handler: "huge", Payload: []byte(strings.Repeat("p", 2500_000)), Stack: "s\nt"}
		if err := tr.PutPoison(ctx, huge); err != nil {
			t.Fatal(err)
		}
		if got, found, err := tr.GetPoison(ctx, huge.ID); err != nil || !found || string(got.Payload) != string(huge.Payload) || got.Stack != "s\nt" {
			t.Errorf("GetPoison of a 2.5 MB record: %d-byte payload, %v, %v", len(got.Payload), found, err)
		}
		if recs, _, err := tr.ListPoison(ctx, transport.PoisonQuery{Handler: "huge"}); err != nil || len(recs) != 1 || len(recs[0].Payload) != 2500_000 {
			t.Errorf("ListPoison(huge): %d records, %v", len(recs), err)
		}
		if ok, err := tr.DeletePoison(ctx, huge.ID); !ok || err != nil {
			t.Errorf("DeletePoison of a record in parts: %v, %v", ok, err)
		}
		if info, err := tr.JetStream().Stream(ctx, tr.Config().StreamName+"_POISON"); err != nil {
			t.Fatal(err)
		} else if n := info.CachedInfo().State.Msgs; n != 5 {
			t.Errorf("%d messages in the poison stream after deleting the record in parts, want the 5 others", n)
		}
		all, _, err := tr.ListPoison(ctx, transport.PoisonQuery{})
		if err != nil || len(all) != 5 {
			t.Fatalf("ListPoison all: %d, %v", len(all), err)
		}
		for i, r := range all {
			if r.ID != ids[i] {
				t.Errorf("record %d is %s, want %s (oldest first)", i, r.ID, ids[i])
			}
		}
		for h, want := range map[string]int{"billing.charge-card": 2, "a.b": 2, "a_b": 1, "none": 0} {
			recs, _, err := tr.ListPoison(ctx, transport.PoisonQuery{Handler: h})
			if err != nil || len(recs) != want {
				t.Errorf("ListPoison(%q) = %d records, %v; want %d", h, len(recs), err, want)
			}
		}
		got, found, err := tr.GetPoison(ctx, ids[0])
		if err != nil || !found || got.Stack != "goroutine 1:\nmain.main()\n\tmain.go:1" || got.Error != "boom\nsecond line" ||
			got.Attempts != 3 || !got.FirstFailure.Equal(now) || got.Handler != "billing.charge-card" {
			t.Errorf("GetPoison = %+v, %v, %v", got, found, err)
		}
		if ok, err := tr.DeletePoison(ctx, ids[0]); !ok || err != nil {
			t.Errorf("DeletePoison = %v, %v", ok, err)
		}
		if ok, err := tr.DeletePoison(ctx, ids[0]); ok || err != nil {
			t.Errorf("second DeletePoison = %v, %v", ok, err)
		}
		if _, found, err := tr.GetPoison(ctx, ids[0]); found || err != nil {
			t.Errorf("GetPoison after delete: %v, %v", found, err)
		}
		if _, found, err := tr.GetPoison(ctx, "no.such>id"); found || err != nil {
			t.Errorf("GetPoison of an impossible ID: %v, %v", found, err)
		}
		if err := tr.PutPoison(ctx, transport.PoisonRecord{ID: "a.b"}); err == nil {
			t.Error("PutPoison accepted an ID with a dot")
		}
	})
}

// A service in another language publishes with plain NATS and the documented
// headers: Herald handlers accept the event, with its metadata.
func TestForeignPublisherWithHeraldHeaders(t *testing.T) {
	eachBroker(t, func(t *testing.T, b broker) {
		tr := b.transport(t)
		bb := bustest.New(t, bus.WithTransport(tr))
		rec := bustest.Record[OrderPlaced](t, bb, "foreign.reader")
		publishForeign(t, b, tr, `{"id":"from-python","seq":7}`, natsgo.Header{
			transport.KeyID:            {"py-1"},
			transport.KeyEvent:         {OrderPlaced{}.EventName()},
			transport.KeyCorrelationID: {"checkout-9"},
			transport.KeyPublishedAt:   {"2026-11-23T10:00:00Z"},
			transport.KeyContentType:   {"application/json"},
		})
		got := rec.Wait(t, 1, wait)
		m := rec.Metadata()[0]
		if got[0].ID != "from-python" || got[0].Seq != 7 || m.ID != "py-1" || m.CorrelationID != "checkout-9" ||
			m.PublishedAt.Year() != 2026 || m.Handler != "foreign.reader" {
			t.Errorf("event %+v, metadata %+v", got[0], m)
		}
	})
}
