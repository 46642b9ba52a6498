package adaptertest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/transport"
)

// putRecord stores a poison record for handler straight into the bus's
// transport, as if that handler had failed an event earlier.
func (s *suite) putRecord(t *testing.T, tr transport.Transport, handler string, seq int) transport.PoisonRecord {
	t.Helper()
	ps, ok := tr.(transport.PoisonStore)
	if !ok {
		t.Skip("the transport keeps no poison records")
	}
	now := time.Now()
	id := event.NewID()
	rec := transport.PoisonRecord{ID: event.NewID(), Handler: handler, Payload: fmt.Appendf(nil, `{"seq":%d}`, seq),
		Event:    transport.Event{ID: id, Name: "adaptertest.Event", CorrelationID: id, PublishedAt: now},
		Metadata: message.Metadata{}, Error: "earlier failure", Attempts: 1, FirstFailure: now, LastFailure: now}
	if err := ps.PutPoison(s.ctx(t), rec); err != nil {
		t.Fatalf("PutPoison: %v", err)
	}
	return rec
}

func (s *suite) startedBus(t *testing.T, be Backend) (*bus.Bus, transport.Transport) {
	t.Helper()
	tr := be(t)
	b := bustest.New(t, bus.WithTransport(tr), fastRetry)
	return b, tr
}

func (s *suite) replayWithoutConsumer(t *testing.T, be Backend) {
	b, tr := s.startedBus(t, be)
	rec := s.putRecord(t, tr, "ghost.handler", 1)
	err := b.Poison().Replay(s.ctx(t), rec.ID)
	if !errors.Is(err, bus.ErrNoHandler) {
		t.Fatalf("replay to a handler nothing consumes: %v, want ErrNoHandler", err)
	}
	if _, err := b.Poison().Get(s.ctx(t), rec.ID); err != nil {
		t.Errorf("the record is gone after a refused replay: %v", err)
	}
	// Once the handler is subscribed, the same replay works.
	r := bustest.Record[Event](t, b, "ghost.handler")
	if err := b.Poison().Replay(s.ctx(t), rec.ID); err != nil {
		t.Fatalf("replay once subscribed: %v", err)
	}
	if got := r.Wait(t, 1, s.cfg.timeout); got[0].Seq != 1 {
		t.Errorf("replayed %+v", got[0])
	}
}

func (s *suite) purgeReplayRace(t *testing.T, be Backend) {
	b, tr := s.startedBus(t, be)
	bustest.Record[Event](t, b, "race.handler")
	for i := range 5 {
		rec := s.putRecord(t, tr, "race.handler", i)
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for j := range errs {
			wg.Go(func() {
				if j%2 == 0 {
					errs[j] = b.Poison().Purge(s.ctx(t), rec.ID)
				} else {
					errs[j] = b.Poison().Replay(s.ctx(t), rec.ID)
				}
			})
		}
		wg.Wait()
		for j, err := range errs {
			if err != nil && !errors.Is(err, bus.ErrPoisonNotFound) {
				t.Errorf("round %d, call %d: %v, want nil or ErrPoisonNotFound", i, j, err)
			}
		}
		if _, err := b.Poison().Get(s.ctx(t), rec.ID); !errors.Is(err, bus.ErrPoisonNotFound) {
			t.Errorf("round %d: record still there after purge and replay: %v", i, err)
		}
	}
}

func (s *suite) poisonPages(t *testing.T, be Backend) {
	b, tr := s.startedBus(t, be)
	const n = 25
	want := map[string]bool{}
	for i := range n {
		handler := "pages.a"
		if i%2 == 1 {
			handler = "pages.b"
		}
		want[s.putRecord(t, tr, handler, i).ID] = handler == "pages.a"
	}
	seen := map[string]bool{}
	q := transport.PoisonQuery{Limit: 4}
	pages := 0
	var last string
	for r, err := range b.Poison().All(s.ctx(t), q) {
		if err != nil {
			t.Fatal(err)
		}
		if seen[r.ID] {
			t.Errorf("record %s listed twice", r.ID)
		}
		if last != "" && r.ID < last {
			t.Errorf("record %s after %s: not oldest first", r.ID, last)
		}
		seen[r.ID], last = true, r.ID
	}
	if len(seen) != n {
		t.Errorf("listed %d of %d records", len(seen), n)
	}
	recs, next, err := b.Poison().Page(s.ctx(t), transport.PoisonQuery{Handler: "pages.a", Limit: 5})
	for err == nil && len(recs) > 0 {
		pages++
		for _, r := range recs {
			if !want[r.ID] {
				t.Errorf("page of pages.a holds %s of %s", r.ID, r.Handler)
			}
		}
		if next == "" {
			break
		}
		recs, next, err = b.Poison().Page(s.ctx(t), transport.PoisonQuery{Handler: "pages.a", Limit: 5, After: next})
	}
	if err != nil || pages < 3 {
		t.Errorf("13 records of pages.a in pages of 5: %d pages, %v", pages, err)
	}
	if all, err := b.Poison().List(s.ctx(t), "pages.b"); err != nil || len(all) != 12 {
		t.Errorf("List(pages.b) = %d records, %v; want 12", len(all), err)
	}
}

func (s *suite) publishOptions(t *testing.T, be Backend) {
	b := s.bus(t, be)
	r := bustest.Record[Event](t, b, "opts.handler")
	bad := map[string]bus.PublishOption{
		"metadata key with a space":   bus.WithMetadata("a b", "v"),
		"metadata key with a colon":   bus.WithMetadata("a:b", "v"),
		"empty metadata key":          bus.WithMetadata("", "v"),
		"metadata value with CR LF":   bus.WithMetadata("k", "a\r\nInjected: yes"),
		"reserved Herald- key":        bus.WithMetadata("Herald-Event", "x"),
		"reserved Nats- key":          bus.WithMetadata("Nats-Msg-Id", "x"),
		"ordering key with newline":   bus.WithOrderingKey("a\nb"),
		"correlation ID with newline": bus.WithCorrelationID("a\nb"),
		"message ID with newline":     bus.WithMessageID("a\nb"),
		"empty message ID":            bus.WithMessageID(""),
		"message IDs outside a batch": bus.WithMessageIDs("a"),
		"nil option":                  nil,
	}
	for name, opt := range bad {
		err := bus.Publish(s.ctx(t), b, Event{Seq: 1}, opt)
		if !errors.Is(err, bus.ErrInvalidOption) {
			t.Errorf("%s: %v, want ErrInvalidOption", name, err)
		}
	}
	if err := bus.Publish[*Event](s.ctx(t), b, nil); !errors.Is(err, bus.ErrInvalidEvent) {
		t.Errorf("nil pointer event: %v, want ErrInvalidEvent", err)
	}
	err := bus.Publish(s.ctx(t), b, Event{Seq: 2}, bus.WithMetadata("X-Tenant", "acme"),
		bus.WithOrderingKey("cust-1"), bus.WithCorrelationID("corr-9"))
	if err != nil {
		t.Fatal(err)
	}
	got := r.Wait(t, 1, s.cfg.timeout)
	if m := r.Metadata()[0]; got[0].Seq != 2 || m.OrderingKey != "cust-1" || m.CorrelationID != "corr-9" {
		t.Errorf("delivered %+v with %+v", got[0], m)
	}

	batch := []Event{{Seq: 3}, {Seq: 4}}
	badBatch := map[string]bus.PublishOption{
		"one ID for two events": bus.WithMessageIDs("only-one"),
		"an ID twice":           bus.WithMessageIDs("dup", "dup"),
		"an empty ID":           bus.WithMessageIDs("x", ""),
		"an ID with a newline":  bus.WithMessageIDs("x", "a\nb"),
		"one ID for the batch":  bus.WithMessageID("same"),
	}
	for name, opt := range badBatch {
		if err := bus.PublishBatch(s.ctx(t), b, batch, opt); !errors.Is(err, bus.ErrInvalidOption) {
			t.Errorf("batch, %s: %v, want ErrInvalidOption", name, err)
		}
	}
	if err := bus.PublishBatch(s.ctx(t), b, batch, bus.WithMessageIDs("row-3", "row-4")); err != nil {
		t.Fatal(err)
	}
	got = r.Wait(t, 3, s.cfg.timeout)
	ids := map[int]string{}
	for i, m := range r.Metadata() {
		ids[got[i].Seq] = m.ID
	}
	if ids[3] != "row-3" || ids[4] != "row-4" || len(got) != 3 {
		t.Errorf("batch with WithMessageIDs delivered IDs %v, want 3→row-3, 4→row-4 (and nothing else)", ids)
	}
}

func (s *suite) stopFromHandler(t *testing.T, be Backend) {
	b := s.bus(t, be)
	var sub *bus.Subscription
	stopped := make(chan error, 1)
	var once sync.Once
	sub, err := bus.Subscribe(b, "inside.stop", func(ctx context.Context, e Event) error {
		once.Do(func() { stopped <- sub.Stop(ctx) })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.publish(t, b, 0, 1, "")
	if err := recv(t, stopped, s.cfg.timeout, "Stop called from the handler to return"); err != nil {
		t.Errorf("Stop from the handler: %v", err)
	}
	recv(t, sub.Done(), s.cfg.timeout, "the subscription to finish stopping")

	b2 := s.bus(t, be)
	closed := make(chan error, 1)
	var once2 sync.Once
	if _, err := bus.Subscribe(b2, "inside.close", func(ctx context.Context, e Event) error {
		once2.Do(func() { closed <- b2.Close(context.Background()) })
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.publish(t, b2, 0, 1, "")
	if err := recv(t, closed, s.cfg.timeout, "Close called from the handler to return"); err != nil {
		t.Errorf("Close from the handler: %v", err)
	}
	recv(t, b2.Done(), s.cfg.timeout, "the bus to finish closing")
}

// recv receives from ch, failing the test if nothing comes within timeout.
func recv[T any](t *testing.T, ch <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("waited %v for %s", timeout, what)
		panic("unreachable")
	}
}

func (s *suite) goexit(t *testing.T, be Backend) {
	b := s.bus(t, be)
	var calls atomic.Int32
	r := &bustest.Recorder[Event]{Fail: func(context.Context, Event) error {
		if calls.Add(1) == 1 {
			runtime.Goexit() // what t.Fatal does in a handler under test
		}
		return nil
	}}
	if _, err := bus.Subscribe(b, "goexit.handler", r.Handle); err != nil {
		t.Fatal(err)
	}
	s.publish(t, b, 0, 2, "")
	r.Wait(t, 1, s.cfg.timeout)
	rec := s.poison(t, b, "goexit.handler", 1)[0]
	if rec.Event.Name != "adaptertest.Event" || len(rec.Payload) == 0 {
		t.Errorf("record %+v", rec)
	}
}

func (s *suite) middlewarePanic(t *testing.T, be Backend) {
	b := s.bus(t, be)
	var calls atomic.Int32
	r := bustest.Record[Event](t, b, "mwpanic.handler", bus.WithHandlerMiddleware(func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			if calls.Add(1) == 1 {
				panic("middleware bug")
			}
			return h(msg)
		}
	}))
	s.publish(t, b, 0, 1, "")
	if got := r.Wait(t, 1, s.cfg.timeout); got[0].Seq != 0 {
		t.Errorf("got %+v", got[0])
	}
	if recs, err := b.Poison().List(s.ctx(t), "mwpanic.handler"); err != nil || len(recs) != 0 {
		t.Errorf("a middleware panic was poisoned: %v %v", recs, err)
	}
}
