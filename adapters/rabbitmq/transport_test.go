package rabbitmq_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldbus/herald/adapters/rabbitmq"
	"github.com/heraldbus/herald/adapters/rabbitmq/rabbitmqtest"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/internal/testkit"
	"github.com/heraldbus/herald/transport"
)

const topic = "rabbit.Tested"

func ctxFor(t *testing.T, d time.Duration) context.Context { return bustest.Context(t, d) }

// started returns a started transport on br.
func started(t *testing.T, br rabbitmqtest.Broker, edit ...func(*rabbitmq.Config)) *rabbitmq.Transport {
	t.Helper()
	tr := br.Transport(t, edit...)
	if err := tr.Start(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	return tr
}

// subscribe opens a channel of handler on topic, closed when t ends.
func subscribe(t *testing.T, tr *rabbitmq.Transport, handler string, window int) <-chan *message.Message {
	t.Helper()
	sub, err := tr.Subscriber(handler)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	ch, err := sub.(transport.WindowSubscriber).SubscribeWindow(ctxFor(t, 30*time.Second), topic, window)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func publish(t *testing.T, tr *rabbitmq.Transport, id string, md message.Metadata) {
	t.Helper()
	m := message.NewMessage(id, []byte(`{}`))
	m.Metadata = md
	m.SetContext(ctxFor(t, 10*time.Second))
	if err := tr.Publisher().Publish(topic, m); err != nil {
		t.Fatalf("publish %s: %v", id, err)
	}
}

func receive(t *testing.T, ch <-chan *message.Message, within time.Duration) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return m
	case <-time.After(within):
		t.Fatalf("nothing received within %v", within)
		return nil
	}
}

func nothing(t *testing.T, ch <-chan *message.Message, d time.Duration) {
	t.Helper()
	select {
	case m := <-ch:
		t.Fatalf("received %s (%v), want nothing", m.UUID, m.Metadata)
	case <-time.After(d):
	}
}

// A nack goes through the wait queue of its delay and comes back to that
// handler alone, after the delay, with its delivery count; a nack on
// shutdown (the message's ctx ended) comes back at once.
func TestNackDelayedToOneHandler(t *testing.T) {
	const delay = 300 * time.Millisecond
	tr := started(t, rabbitmqtest.New(t), func(c *rabbitmq.Config) { c.NakDelay = delay; c.MaxNakDelay = 4 * delay })
	failing := subscribe(t, tr, "nack.failing", 1)
	other := subscribe(t, tr, "nack.other", 1)
	publish(t, tr, "ev-1", message.Metadata{transport.KeyID: "ev-1", "X-Tenant": "acme"})

	if m := receive(t, other, 10*time.Second); m.UUID != "ev-1" || !m.Ack() {
		t.Fatalf("other got %s", m.UUID)
	}
	m := receive(t, failing, 10*time.Second)
	if got := m.Metadata.Get(transport.KeyDeliveryCount); got != "1" {
		t.Errorf("first delivery count %q, want 1", got)
	}
	nacked := time.Now()
	m.Nack()
	m = receive(t, failing, 10*time.Second)
	if d := time.Since(nacked); d < delay {
		t.Errorf("redelivered after %v, before the %v nack delay", d, delay)
	}
	if m.UUID != "ev-1" || m.Metadata.Get("X-Tenant") != "acme" || m.Metadata.Get(transport.KeyDeliveryCount) != "2" {
		t.Errorf("redelivered %s with %v, want ev-1, its metadata and count 2", m.UUID, m.Metadata)
	}
	for k := range m.Metadata {
		if strings.HasPrefix(k, "x-") {
			t.Errorf("broker header %q leaked into the metadata", k)
		}
	}
	m.Nack() // the second nack: twice the delay
	nacked = time.Now()
	m = receive(t, failing, 10*time.Second)
	if d := time.Since(nacked); d < 2*delay || m.Metadata.Get(transport.KeyDeliveryCount) != "3" {
		t.Errorf("third delivery after %v with count %s, want at least %v and 3", d, m.Metadata.Get(transport.KeyDeliveryCount), 2*delay)
	}

	// Shutdown: the message's ctx has ended, so the nack requeues at once.
	ctx, cancel := context.WithCancel(context.Background())
	m.SetContext(ctx)
	cancel()
	m.Nack()
	m = receive(t, failing, 10*time.Second)
	if m.Metadata.Get(transport.KeyDeliveryCount) != "4" {
		t.Errorf("requeued delivery count %s, want 4", m.Metadata.Get(transport.KeyDeliveryCount))
	}
	m.Ack()
	nothing(t, other, 4*delay)
}

// A window subscription hands out up to n messages unsettled, in queue
// order, and the next only once one is settled.
func TestWindow(t *testing.T) {
	tr := started(t, rabbitmqtest.New(t))
	ch := subscribe(t, tr, "window.h", 3)
	for _, id := range []string{"a", "b", "c", "d"} {
		publish(t, tr, id, nil)
	}
	var got []*message.Message
	for range 3 {
		got = append(got, receive(t, ch, 10*time.Second))
	}
	if got[0].UUID != "a" || got[1].UUID != "b" || got[2].UUID != "c" {
		t.Fatalf("window order %s %s %s", got[0].UUID, got[1].UUID, got[2].UUID)
	}
	nothing(t, ch, 200*time.Millisecond)
	got[1].Ack()
	if m := receive(t, ch, 10*time.Second); m.UUID != "d" {
		t.Errorf("after an ack got %s, want d", m.UUID)
	}
}

// A foreign publisher (amqp091-go, no Herald) sends a Herald event by setting
// the same headers as on NATS.
func TestForeignPublisher(t *testing.T) {
	br := rabbitmqtest.New(t)
	tr := br.Transport(t)
	b := bustest.New(t, bus.WithTransport(tr))
	type Tested struct {
		N int `json:"n"`
	}
	r := bustest.Record[Tested](t, b, "foreign.h")
	conn, err := amqp.Dial(br.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	err = ch.PublishWithContext(ctxFor(t, 10*time.Second), br.Prefix+".events", "rabbitmq_test.Tested", false, false, amqp.Publishing{
		Headers: amqp.Table{transport.KeyID: "foreign-1", transport.KeyEvent: "rabbitmq_test.Tested", transport.KeyCorrelationID: "corr-7"},
		Body:    []byte(`{"n":42}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	evs := r.Wait(t, 1, 10*time.Second)
	m := r.Metadata()[0]
	if evs[0].N != 42 || m.ID != "foreign-1" || m.CorrelationID != "corr-7" {
		t.Errorf("got %+v with %+v", evs[0], m)
	}
}

// Publish errors: too large, replay without a handler, names a topic
// exchange would misread, and everything after Close.
func TestPublishErrors(t *testing.T) {
	tr := started(t, rabbitmqtest.New(t), func(c *rabbitmq.Config) { c.MaxMessageSize = 1024 })
	big := message.NewMessage("big", make([]byte, 2048))
	if err := tr.Publisher().Publish(topic, big); !errors.Is(err, transport.ErrTooLarge) {
		t.Errorf("2 kB with a 1 kB limit: %v", err)
	}
	replay := message.NewMessage("r", []byte(`{}`))
	if err := tr.Publisher().Publish(transport.ReplayTopic("nobody.here"), replay); !errors.Is(err, transport.ErrNoHandler) {
		t.Errorf("replay to a handler with no queue: %v", err)
	}
	if err := tr.Publisher().Publish("a.#.b", message.NewMessage("w", nil)); !errors.Is(err, transport.ErrInvalidName) {
		t.Errorf("topic with a # token: %v", err)
	}
	if _, err := tr.Subscriber("h.#"); !errors.Is(err, transport.ErrInvalidName) {
		t.Errorf("handler with a # token: %v", err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	testkit.RefusesWhenClosed(t, tr, topic)
}

// Queue names are distinct for distinct (handler, topic) pairs, even when
// their readable parts are equal or cut, and never longer than 255 bytes.
func TestQueueNames(t *testing.T) {
	tr := started(t, rabbitmqtest.New(t))
	long := strings.Repeat("h", 250)
	names := map[string]bool{}
	for _, p := range [][2]string{{"a.b", "c"}, {"a", "b/c"}, {"a/b", "c"}, {long + "1", "t"}, {long + "2", "t"}} {
		n := tr.QueueName(p[0], p[1])
		if len(n) > 255 {
			t.Errorf("QueueName(%q, %q) is %d bytes", p[0], p[1], len(n))
		}
		if names[n] {
			t.Errorf("QueueName(%q, %q) = %q, taken", p[0], p[1], n)
		}
		names[n] = true
	}
}
