package nats_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/testkit"
	"github.com/heraldbus/herald/transport"
)

// storedHeaders returns the headers of the last message the events stream
// holds on subject, as the server stores it.
func storedHeaders(t *testing.T, tr interface {
	JetStream() jetstream.JetStream
}, stream, subject string) natsgo.Header {
	t.Helper()
	s, err := tr.JetStream().Stream(testCtx(t), stream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(testCtx(t), subject)
	if err != nil {
		t.Fatalf("stored message on %s: %v", subject, err)
	}
	return m.Header
}

// An event's ID travels once, as Nats-Msg-Id: the stream holds no Herald-Id
// header, and the handler sees the ID (and the correlation ID it defaults to)
// all the same.
func TestLeanWireSendsTheIDOnce(t *testing.T) {
	eachBroker(t, func(t *testing.T, b broker) {
		tr := b.transport(t)
		bb := bustest.New(t, bus.WithTransport(tr))
		rec := bustest.Record[OrderPlaced](t, bb, "lean.reader")
		if err := bus.Publish(testCtx(t), bb, OrderPlaced{ID: "o-1", Seq: 1}, bus.WithMessageID("lean-1")); err != nil {
			t.Fatal(err)
		}
		rec.Wait(t, 1, wait)
		if m := rec.Metadata()[0]; m.ID != "lean-1" || m.CorrelationID != "lean-1" || m.Name != (OrderPlaced{}).EventName() {
			t.Errorf("handler metadata %+v, want ID and correlation ID lean-1", m)
		}
		h := storedHeaders(t, tr, tr.Config().StreamName, tr.Subject(OrderPlaced{}.EventName()))
		if _, ok := h[transport.KeyID]; ok {
			t.Errorf("the stored message has a %s header: %v", transport.KeyID, h)
		}
		if got := h.Get(jetstream.MsgIDHeader); got != "lean-1" {
			t.Errorf("Nats-Msg-Id = %q, want lean-1 (headers %v)", got, h)
		}
		if h.Get(transport.KeyEvent) != (OrderPlaced{}).EventName() {
			t.Errorf("headers %v lack %s", h, transport.KeyEvent)
		}
	})
}

// A replay's message ID is its poison record's, not the event's: Herald-Id
// travels then, and the handler sees the event's ID again.
func TestLeanWireReplayKeepsTheEventID(t *testing.T) {
	eachBroker(t, func(t *testing.T, b broker) {
		tr := b.transport(t)
		bb := bustest.New(t, bus.WithTransport(tr))
		var fixed atomic.Bool
		rec := testkit.FailUntil[OrderPlaced](&fixed, handlers.Permanent(errors.New("not yet")))
		if _, err := bus.Subscribe(bb, "lean.replayed", rec.Handle); err != nil {
			t.Fatal(err)
		}
		if err := bus.Publish(testCtx(t), bb, OrderPlaced{ID: "o-2"}, bus.WithMessageID("lean-2")); err != nil {
			t.Fatal(err)
		}
		recs := waitPoison(t, bb, "lean.replayed", 1)
		if recs[0].Event.ID != "lean-2" {
			t.Fatalf("poison record of event %q, want lean-2", recs[0].Event.ID)
		}
		fixed.Store(true)
		if err := bb.Poison().Replay(testCtx(t), recs[0].ID); err != nil {
			t.Fatal(err)
		}
		rec.Wait(t, 1, wait)
		if m := rec.Metadata()[0]; m.ID != "lean-2" {
			t.Errorf("replayed event ID %q, want lean-2", m.ID)
		}
		h := storedHeaders(t, tr, tr.Config().StreamName, tr.Subject(transport.ReplayTopic("lean.replayed")))
		if h.Get(transport.KeyID) != "lean-2" || h.Get(jetstream.MsgIDHeader) != recs[0].ID {
			t.Errorf("replay headers %v: want Herald-Id lean-2, Nats-Msg-Id %s", h, recs[0].ID)
		}
	})
}

// A foreign publisher may send the ID as Nats-Msg-Id only, or as Herald-Id
// only: the handler sees it either way.
func TestForeignPublisherIDHeaders(t *testing.T) {
	eachBroker(t, func(t *testing.T, b broker) {
		tr := b.transport(t)
		bb := bustest.New(t, bus.WithTransport(tr))
		rec := bustest.Record[OrderPlaced](t, bb, "foreign.ids")
		publish := func(seq int, header string, id string) {
			publishForeign(t, b, tr, `{"id":"foreign","seq":`+string(rune('0'+seq))+`}`,
				natsgo.Header{transport.KeyEvent: {OrderPlaced{}.EventName()}, header: {id}})
		}
		publish(1, jetstream.MsgIDHeader, "only-nats-msg-id")
		publish(2, transport.KeyID, "only-herald-id")
		got := rec.Wait(t, 2, wait)
		md := rec.Metadata()
		ids := map[int]string{}
		for i, e := range got {
			ids[e.Seq] = md[i].ID
			if md[i].CorrelationID != md[i].ID {
				t.Errorf("event %d: correlation ID %q, want its ID %q", e.Seq, md[i].CorrelationID, md[i].ID)
			}
		}
		if ids[1] != "only-nats-msg-id" || ids[2] != "only-herald-id" {
			t.Errorf("IDs by seq %v", ids)
		}
	})
}

type Quote struct{ Item string }

func (Quote) EventName() string { return "herald_test.Quote" }

// A request travels on core NATS, without Nats-Msg-Id: its ID goes as
// Herald-Id, and the handler sees it. A foreign requester sending the ID as
// Nats-Msg-Id only is answered with it too.
func TestRequestCarriesItsID(t *testing.T) {
	eachBroker(t, func(t *testing.T, b broker) {
		tr := b.transport(t)
		bb := bustest.New(t, bus.WithTransport(tr))
		if _, err := bus.Handle(bb, "quotes", func(ctx context.Context, q Quote) (string, error) {
			m, ok := handlers.FromContext(ctx)
			if !ok {
				return "", errors.New("no metadata")
			}
			return m.ID + "/" + m.CorrelationID, nil
		}); err != nil {
			t.Fatal(err)
		}
		got, err := bus.Request[Quote, string](testCtx(t), bb, Quote{Item: "tea"}, bus.WithMessageID("req-1"))
		if err != nil || got != "req-1/req-1" {
			t.Errorf("Request = %q, %v; want the handler to see ID req-1", got, err)
		}

		nc := connect(t, b.url)
		msg := natsgo.NewMsg(tr.RequestSubject(Quote{}.EventName()))
		msg.Data = []byte(`{"Item":"coffee"}`)
		msg.Header.Set(transport.KeyEvent, Quote{}.EventName())
		msg.Header.Set(jetstream.MsgIDHeader, "foreign-req")
		resp, err := nc.RequestMsgWithContext(testCtx(t), msg)
		if err != nil {
			t.Fatal(err)
		}
		if string(resp.Data) != `"foreign-req/foreign-req"` || resp.Header.Get(transport.KeyError) != "" {
			t.Errorf("foreign request answered %q, error %q", resp.Data, resp.Header.Get(transport.KeyError))
		}
	})
}
