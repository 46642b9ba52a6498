package nats_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldbus/herald/adapters/adaptertest"
	"github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/internal/testkit"
	"github.com/heraldbus/herald/middleware"
	"github.com/heraldbus/herald/transport"
)

// Adapter tests through the public bus API, on every broker of brokers().

type OrderPlaced struct {
	ID  string `json:"id"`
	Seq int    `json:"seq"`
}

func (OrderPlaced) EventName() string { return "herald_test.OrderPlaced" }

type PaymentTaken struct {
	OrderID string `json:"order_id"`
	Seq     int    `json:"seq"`
}

func (PaymentTaken) EventName() string { return "herald_test.PaymentTaken" }

const wait = 20 * time.Second

func testCtx(t *testing.T) context.Context { return bustest.Context(t, wait) }

// eachBroker runs fn on every broker, as subtests.
func eachBroker(t *testing.T, fn func(t *testing.T, b broker)) { adaptertest.Each(t, brokers(t), fn) }

// newBus returns a started bus on a new transport of b, closed when t ends.
func newBus(t *testing.T, b broker, edit ...func(*nats.Config)) *bus.Bus {
	t.Helper()
	return bustest.New(t, bus.WithTransport(b.transport(t, edit...)),
		bus.WithDefaultRetry(middleware.RetryPolicy{InitialInterval: 5 * time.Millisecond, MaxInterval: 20 * time.Millisecond}))
}

// waitPoison waits until handler has n poison records on b, and returns them.
func waitPoison(t *testing.T, b *bus.Bus, handler string, n int) []transport.PoisonRecord {
	t.Helper()
	return testkit.WaitPoison(t, b, handler, n, wait)
}

func publishOrders(t *testing.T, b *bus.Bus, from, n int) {
	t.Helper()
	evs := make([]OrderPlaced, n)
	for i := range evs {
		evs[i] = OrderPlaced{ID: fmt.Sprintf("o-%d", from+i), Seq: from + i}
	}
	if err := bus.PublishBatch(testCtx(t), b, evs); err != nil {
		t.Fatalf("publish %d orders: %v", n, err)
	}
}

// A handler whose processes are all down gets, when one comes back, the
// events published meanwhile, and none it had acknowledged before.
func TestConsumerResumesAfterRestart(t *testing.T) {
	eachBroker(t, func(t *testing.T, b broker) {
		pub := newBus(t, b)

		c1 := bustest.New(t, bus.WithTransport(b.transport(t)))
		r1 := bustest.Record[OrderPlaced](t, c1, "shipping.ship")
		publishOrders(t, pub, 0, 5)
		r1.Wait(t, 5, wait)
		if err := c1.Close(testCtx(t)); err != nil {
			t.Fatal(err)
		}

		publishOrders(t, pub, 5, 7) // while no "shipping.ship" runs

		c2 := newBus(t, b)
		r2 := bustest.Record[OrderPlaced](t, c2, "shipping.ship")
		publishOrders(t, pub, 12, 1) // a marker, after the backlog
		got := r2.Wait(t, 8, wait)
		for i, e := range got {
			if e.Seq != 5+i {
				t.Fatalf("after restart got %v, want seqs 5..12 in order", got)
			}
		}
		for _, m := range r2.Metadata() {
			if m.Attempt != 1 {
				t.Errorf("event %s delivered at attempt %d after a clean restart", m.ID, m.Attempt)
			}
		}
	})
}

// An unreachable server gives a clear error at once: from New when it dials,
// from Start when the connection was made lazily.
func TestUnreachableServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + l.Addr().String()
	_ = l.Close()

	begin := time.Now()
	_, err = nats.New(nats.Config{URL: url})
	if err == nil || !strings.Contains(err.Error(), url) {
		t.Errorf("New on a closed port: %v", err)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("New took %v to fail", d)
	}

	tr, err := nats.New(nats.Config{URL: url, NATSOptions: []natsgo.Option{natsgo.RetryOnFailedConnect(true)}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.New(bus.WithTransport(tr))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	begin = time.Now()
	if err := b.Start(ctx); err == nil || !strings.Contains(err.Error(), "not connected") {
		t.Errorf("Start without a server: %v", err)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("Start took %v to fail", d)
	}
	if err := b.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// The same handlers and test body pass on memory and on NATS.
func TestSameHandlersOnMemoryAndNATS(t *testing.T) {
	body := func(t *testing.T, b *bus.Bus) {
		// Handlers as a monolith would have them: the transport is not theirs.
		if _, err := bus.Subscribe(b, "billing.charge", func(ctx context.Context, e OrderPlaced) error {
			return bus.Publish(ctx, b, PaymentTaken{OrderID: e.ID, Seq: e.Seq})
		}); err != nil {
			t.Fatal(err)
		}
		shipped := bustest.Record[PaymentTaken](t, b, "shipping.ship")
		orders := bustest.Record[OrderPlaced](t, b, "audit.orders")
		const n = 20
		for i := range n {
			if err := bus.Publish(testCtx(t), b, OrderPlaced{ID: fmt.Sprintf("o-%d", i), Seq: i}); err != nil {
				t.Fatal(err)
			}
		}
		orders.Wait(t, n, wait)
		got := shipped.Wait(t, n, wait)
		root := map[string]string{} // order ID → event ID
		for i, m := range orders.Metadata() {
			root[orders.Events()[i].ID] = m.ID
		}
		for i, m := range shipped.Metadata() {
			if want := root[got[i].OrderID]; m.CorrelationID != want || m.CausationID != want {
				t.Errorf("payment %d: correlation %q causation %q, want %q", i, m.CorrelationID, m.CausationID, want)
			}
		}
	}
	t.Run("memory", func(t *testing.T) { body(t, bustest.New(t)) })
	eachBroker(t, func(t *testing.T, b broker) { body(t, newBus(t, b)) })
}

// Events published before the server restarts, and after it is back, reach
// the handler: the transport reconnects and pulls again.
func TestServerRestart(t *testing.T) {
	srv := natstest.New(t)
	b := broker{url: srv.URL()}
	bb := newBus(t, b)
	r := bustest.Record[OrderPlaced](t, bb, "restart.h")
	publishOrders(t, bb, 0, 3)
	r.Wait(t, 3, wait)
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	// Publishing while the client reconnects may fail: retry with the same
	// event IDs (the stream drops duplicates).
	for i := 3; i < 6; i++ {
		bustest.Eventually(t, wait, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			return bus.Publish(ctx, bb, OrderPlaced{Seq: i}, bus.WithMessageID(fmt.Sprintf("restart-%d", i))) == nil
		}, "publish %d after restart", i)
	}
	got := r.Wait(t, 6, wait)
	seen := map[int]bool{}
	for _, e := range got {
		seen[e.Seq] = true
	}
	if len(seen) != 6 {
		t.Errorf("after restart got %v", got)
	}
}

// Closing a subscriber gives its prefetched, unhandled messages back at once:
// another process of the name gets them well before AckWait.
func TestSubscriberCloseGivesBackPrefetched(t *testing.T) {
	eachBroker(t, func(t *testing.T, b broker) {
		ctx := testCtx(t)
		// nats-server 2.9 (2.9.10 measured; 2.15 is fine) mishandles a
		// redelivery that comes due while no pull request waits: the next pull
		// gets the last delivered message again, and the nacked one waits for
		// AckWait. There, allow for one AckWait.
		ackWait := 30 * time.Second
		limit := 10 * time.Second
		if old := serverBefore(t, b.url, 2, 10); old {
			ackWait, limit = 2*time.Second, 10*time.Second
		}
		cfg := func(c *nats.Config) { c.AckWait = ackWait }
		tr1 := b.transport(t, cfg)
		s1, err := tr1.Subscriber("give.back")
		if err != nil {
			t.Fatal(err)
		}
		ch1, err := s1.Subscribe(ctx, "herald_test.Thing")
		if err != nil {
			t.Fatal(err)
		}
		const n = 10
		msgs := make([]*message.Message, n)
		for i := range msgs {
			msgs[i] = message.NewMessage(fmt.Sprintf("thing-%d", i), []byte("{}"))
		}
		if err := tr1.PublishBatch(ctx, "herald_test.Thing", msgs); err != nil {
			t.Fatal(err)
		}
		first := <-ch1 // held, neither acked nor nacked
		if first.Metadata.Get(transport.KeyDeliveryCount) != "1" {
			t.Errorf("delivery count %q", first.Metadata.Get(transport.KeyDeliveryCount))
		}
		if err := s1.Close(); err != nil {
			t.Fatal(err)
		}
		if _, ok := <-ch1; ok {
			t.Error("channel open after Close")
		}
		// Published after the close: the closed pull request must not take them.
		more := make([]*message.Message, 5)
		for i := range more {
			more[i] = message.NewMessage(fmt.Sprintf("thing-%d", n+i), []byte("{}"))
		}
		if err := tr1.PublishBatch(ctx, "herald_test.Thing", more); err != nil {
			t.Fatal(err)
		}

		tr2 := b.transport(t, cfg) // anything left to AckWait would miss the deadline (on 2.10+)
		s2, _ := tr2.Subscriber("give.back")
		defer s2.Close()
		ch2, err := s2.Subscribe(ctx, "herald_test.Thing")
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		deadline := time.After(limit)
		for len(seen) < n+len(more) {
			select {
			case m := <-ch2:
				seen[m.UUID] = true
				m.Ack()
			case <-deadline:
				t.Fatalf("got %d of %d messages", len(seen), n+len(more))
			}
		}
	})
}

// serverBefore reports whether the server at url is older than major.minor.
func serverBefore(t *testing.T, url string, major, minor int) bool {
	t.Helper()
	nc := connect(t, url)
	var ma, mi int
	if _, err := fmt.Sscanf(nc.ConnectedServerVersion(), "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma < major || ma == major && mi < minor
}

// Two transports with their own stream and prefix on one server never see
// each other's events.
func TestStreamsIsolated(t *testing.T) {
	srv := natstest.New(t)
	ba := broker{url: srv.URL(), stream: "A", prefix: "a"}
	bb := broker{url: srv.URL(), stream: "B", prefix: "b.herald"}
	busA, busB := newBus(t, ba), newBus(t, bb)
	ra := bustest.Record[OrderPlaced](t, busA, "h")
	rb := bustest.Record[OrderPlaced](t, busB, "h")
	publishOrders(t, busA, 0, 3)
	publishOrders(t, busB, 100, 2)
	publishOrders(t, busA, 1000, 1) // markers: a leaked event would come before them
	publishOrders(t, busB, 1000, 1)
	if got := ra.Wait(t, 4, wait); len(got) != 4 || got[3].Seq != 1000 {
		t.Errorf("A got %v", got)
	}
	if got := rb.Wait(t, 3, wait); len(got) != 3 || got[2].Seq != 1000 {
		t.Errorf("B got %v", got)
	}
}

func TestPublishErrors(t *testing.T) {
	srv := natstest.New(t)
	b := broker{url: srv.URL()}
	tr := b.transport(t, func(c *nats.Config) { c.MaxPayload = 1024 })
	pub := tr.Publisher()
	msg := func(payload string, md message.Metadata) *message.Message {
		m := message.NewMessage(event.NewID(), []byte(payload))
		for k, v := range md {
			m.Metadata[k] = v
		}
		return m
	}
	if err := pub.Publish("errs.ok", msg("{}", message.Metadata{"X-Any": "v", "Nats-Rollup": "all"})); err != nil {
		t.Fatalf("publish: %v", err)
	}
	err := pub.Publish("errs.big", msg(strings.Repeat("x", 2000), nil))
	if !errors.Is(err, transport.ErrTooLarge) {
		t.Errorf("2 kB with MaxPayload 1 kB: %v", err)
	}
	if err := pub.Publish("errs.hdr", msg("{}", message.Metadata{"X-Bad": "a\nb"})); err == nil {
		t.Error("a header value with a line break was accepted")
	}
	if err := pub.Publish("errs.bad topic", msg("{}", nil)); err == nil {
		t.Error("a topic with a space was accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m := msg("{}", nil)
	m.SetContext(ctx)
	if err := pub.Publish("errs.ctx", m); !errors.Is(err, context.Canceled) {
		t.Errorf("publish with a cancelled ctx: %v", err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	testkit.RefusesWhenClosed(t, tr, "errs.closed")
}

// A stream that exists with other subjects is reported, not changed.
func TestExistingStreamWithOtherSubjects(t *testing.T) {
	url := natstest.New(t).URL()
	js, _ := jetstream.New(connect(t, url))
	if _, err := js.CreateStream(testCtx(t), jetstream.StreamConfig{Name: "HERALD", Subjects: []string{"other.>"}}); err != nil {
		t.Fatal(err)
	}
	tr := broker{url: url}.transport(t)
	if err := tr.Start(testCtx(t)); err == nil || !strings.Contains(err.Error(), "other.>") {
		t.Errorf("Start with a foreign HERALD stream: %v", err)
	}
}

// A connection given in Config.Conn is the caller's: the transport uses it
// and leaves it open.
func TestCallerConnectionLeftOpen(t *testing.T) {
	nc := connect(t, natstest.New(t).URL())
	tr, err := nats.New(nats.Config{Conn: nc})
	if err != nil {
		t.Fatal(err)
	}
	b := bustest.New(t, bus.WithTransport(tr))
	r := bustest.Record[OrderPlaced](t, b, "conn.h")
	publishOrders(t, b, 0, 3)
	r.Wait(t, 3, wait)
	if err := b.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if nc.IsClosed() || nc.IsDraining() {
		t.Fatal("the transport closed the caller's connection")
	}
	if err := nc.Publish("still.usable", nil); err != nil {
		t.Error(err)
	}
}

func TestInvalidConfig(t *testing.T) {
	for name, c := range map[string]nats.Config{
		"stream with dot":    {StreamName: "a.b"},
		"prefix wildcard":    {SubjectPrefix: "a.*"},
		"prefix empty token": {SubjectPrefix: "a..b"},
		"negative ack wait":  {AckWait: -time.Second},
		"tiny ack wait":      {AckWait: time.Millisecond},
		"replicas":           {Replicas: 7},
		"max deliver":        {MaxDeliver: -2},
		"retention":          {Retention: 9},
		"negative prefetch":  {Prefetch: -1},
		"nil nats option":    {NATSOptions: []natsgo.Option{nil}},
	} {
		if _, err := nats.New(c); !errors.Is(err, transport.ErrInvalidOption) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
