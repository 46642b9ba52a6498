package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/adapters/adaptertest"
	"github.com/heraldbus/herald/adapters/kafka"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/transport"
)

// Tests of the watermill publisher and subscriber themselves, below the bus.

const wait = 20 * time.Second

func testCtx(t *testing.T) context.Context { return bustest.Context(t, wait) }

// eachBroker runs fn on every broker, as subtests.
func eachBroker(t *testing.T, fn func(t *testing.T, b broker)) { adaptertest.Each(t, brokers(t), fn) }

// started returns a started transport on b.
func started(t *testing.T, b broker, edit ...func(*kafka.Config)) *kafka.Transport {
	t.Helper()
	tr := b.transport(t, edit...)
	if err := tr.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	return tr
}

// publishSeqs publishes messages with payloads "0".."n-1" (Herald-Id
// "<prefix>-<i>") on topic.
func publishSeqs(t *testing.T, tr *kafka.Transport, topic, prefix string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		m := message.NewMessage(fmt.Sprintf("%s-%d", prefix, i), []byte(strconv.Itoa(i)))
		m.Metadata.Set(transport.KeyID, m.UUID)
		m.Metadata.Set(transport.KeyEvent, topic)
		m.SetContext(testCtx(t))
		if err := tr.Publisher().Publish(topic, m); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
}

// receive takes n messages from ch.
func receive(t *testing.T, ch <-chan *message.Message, n int) []*message.Message {
	t.Helper()
	out := make([]*message.Message, 0, n)
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for len(out) < n {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatalf("channel closed after %d of %d messages", len(out), n)
			}
			out = append(out, m)
		case <-deadline.C:
			t.Fatalf("%d of %d messages within %v", len(out), n, wait)
		}
	}
	return out
}

func payloads(ms []*message.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, string(m.Payload))
	}
	return out
}

// subscribeWindow opens a window subscription of handler on topic, closed
// with its subscriber when t ends (or by close).
func subscribeWindow(t *testing.T, tr *kafka.Transport, handler, topic string, window int) (<-chan *message.Message, func()) {
	t.Helper()
	sub, err := tr.Subscriber(handler)
	if err != nil {
		t.Fatal(err)
	}
	ws := sub.(transport.WindowSubscriber)
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := ws.SubscribeWindow(ctx, topic, window)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	closeSub := func() {
		if !closed {
			closed = true
			cancel()
			_ = sub.Close()
		}
	}
	t.Cleanup(closeSub)
	return ch, closeSub
}

// The heart of "nothing lost" with a window: records settled out of order
// commit only up to the lowest unsettled one. Acking 1..9 of 10 and closing
// leaves 0 uncommitted; the next member gets 0..9 again, and once 0 is acked
// too, a third member gets only what follows.
func TestWindowCommitsUpToLowestUnsettled(t *testing.T) {
	eachBroker(t, func(t *testing.T, b broker) {
		const topic, handler = "window.Event", "window.h"
		tr := started(t, b)
		_, closeFirst := subscribeWindow(t, tr, handler, topic, 10) // joins: the group starts here
		closeFirst()
		publishSeqs(t, tr, topic, "w", 0, 10)

		ch, closeSub := subscribeWindow(t, started(t, b), handler, topic, 10)
		ms := receive(t, ch, 10)
		if got := strings.Join(payloads(ms), ","); got != "0,1,2,3,4,5,6,7,8,9" {
			t.Fatalf("window delivered %s, want 0..9 in order", got)
		}
		for _, m := range ms[1:] {
			m.Ack()
		}
		closeSub() // 0 never settled

		ch, closeSub = subscribeWindow(t, started(t, b), handler, topic, 10)
		ms = receive(t, ch, 10)
		if got := strings.Join(payloads(ms), ","); got != "0,1,2,3,4,5,6,7,8,9" {
			t.Fatalf("after a close with 0 unsettled, the next member got %s, want 0..9 again", got)
		}
		ms[0].Ack()
		for _, m := range ms[1:5] {
			m.Ack()
		}
		closeSub() // 0..4 settled, 5..9 not

		pub := started(t, b)
		publishSeqs(t, pub, topic, "w", 10, 1)
		ch, _ = subscribeWindow(t, started(t, b), handler, topic, 10)
		ms = receive(t, ch, 6)
		if got := strings.Join(payloads(ms), ","); got != "5,6,7,8,9,10" {
			t.Fatalf("after 0..4 were settled, the next member got %s, want 5..10", got)
		}
		for _, m := range ms {
			m.Ack()
		}
	})
}

// A nack is redelivered by the consumer itself LocalRedeliveries times,
// then through the handler's replay topic; the delivery count grows across
// both; the records behind it are not held up.
func TestNackRedeliveredLocallyThenViaReplayTopic(t *testing.T) {
	eachBroker(t, func(t *testing.T, b broker) {
		const topic, handler = "nack.Event", "nack.h"
		tr := started(t, b, func(c *kafka.Config) { c.LocalRedeliveries = 2 })
		sub, err := tr.Subscriber(handler)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Close() })
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		events, err := sub.Subscribe(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		replays, err := sub.Subscribe(ctx, transport.ReplayTopic(handler))
		if err != nil {
			t.Fatal(err)
		}
		publishSeqs(t, tr, topic, "n", 0, 2)
		var counts []string
		var order []string
		deadline := time.After(wait)
		for len(order) < 5 {
			var m *message.Message
			from := "topic"
			select {
			case m = <-events:
			case m = <-replays:
				from = "replay"
			case <-deadline:
				t.Fatalf("deliveries so far: %v", order)
			}
			order = append(order, string(m.Payload)+"@"+from)
			if string(m.Payload) == "0" {
				counts = append(counts, m.Metadata.Get(transport.KeyDeliveryCount))
				if len(counts) < 4 {
					m.Nack()
					continue
				}
			}
			m.Ack()
		}
		if got := strings.Join(counts, ","); got != "1,2,3,4" {
			t.Errorf("delivery counts of the nacked event: %s, want 1,2,3,4", got)
		}
		want := "0@topic,1@topic,0@topic,0@topic,0@replay" // 1 is not held up behind 0
		if got := strings.Join(order, ","); got != want {
			t.Errorf("deliveries %s, want %s", got, want)
		}
	})
}

// The start position of a handler name that never consumed a topic:
// StartNew skips the history, StartEarliest replays it, StartAt starts at a
// time; a name that consumed before resumes where it stopped whatever its
// StartFrom says.
func TestStartPosition(t *testing.T) {
	eachBroker(t, func(t *testing.T, b broker) {
		cases := []struct {
			name  string
			start func(mid time.Time) kafka.StartPosition
			want  string
		}{
			{"new", func(time.Time) kafka.StartPosition { return kafka.StartNew() }, "5"},
			{"earliest", func(time.Time) kafka.StartPosition { return kafka.StartEarliest() }, "0,1,2,3,4,5"},
			{"at", kafka.StartAt, "3,4,5"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				topic, handler := "history."+tc.name+".Event", "history."+tc.name
				tr := started(t, b)
				publishSeqs(t, tr, topic, "old", 0, 3)
				// Record timestamps have millisecond resolution: 0..2 are
				// before mid, 3 and 4 after it.
				time.Sleep(5 * time.Millisecond)
				mid := time.Now()
				time.Sleep(5 * time.Millisecond)
				publishSeqs(t, tr, topic, "new", 3, 2)

				start := tc.start(mid)
				sub := started(t, b, func(c *kafka.Config) { c.StartFrom = start })
				ch, closeSub := subscribeWindow(t, sub, handler, topic, 10)
				publishSeqs(t, tr, topic, "after", 5, 1)
				ms := receive(t, ch, strings.Count(tc.want, ",")+1)
				if got := strings.Join(payloads(ms), ","); got != tc.want {
					t.Fatalf("%s got %s, want %s", start, got, tc.want)
				}
				for _, m := range ms {
					m.Ack()
				}
				closeSub()
				// Back with another StartFrom: the group resumes where it
				// stopped.
				publishSeqs(t, tr, topic, "later", 6, 1)
				again := started(t, b, func(c *kafka.Config) { c.StartFrom = kafka.StartEarliest() })
				ch, _ = subscribeWindow(t, again, handler, topic, 10)
				if got := payloads(receive(t, ch, 1)); got[0] != "6" {
					t.Errorf("back after a stop, %s resumed with %v, want 6 (what it handled is committed)", handler, got)
				}
			})
		}
	})
}

func TestPublishErrors(t *testing.T) {
	eachBroker(t, func(t *testing.T, b broker) {
		tr := started(t, b, func(c *kafka.Config) { c.MaxMessageBytes = 2048 })
		msg := func(payload []byte) *message.Message {
			m := message.NewMessage(event.NewID(), payload)
			m.SetContext(testCtx(t))
			return m
		}
		cases := []struct {
			name  string
			topic string
			msg   *message.Message
			want  error
		}{
			{"replay to a handler that never subscribed", transport.ReplayTopic("ghost"), msg([]byte("{}")), transport.ErrNoHandler},
			{"larger than MaxMessageBytes", "errors.Event", msg(make([]byte, 4096)), transport.ErrTooLarge},
			{"empty topic", "", msg([]byte("{}")), transport.ErrInvalidName},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				if err := tr.Publisher().Publish(tc.topic, tc.msg); !errors.Is(err, tc.want) {
					t.Errorf("Publish: %v, want %v", err, tc.want)
				}
			})
		}
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
		if err := tr.Publisher().Publish("errors.Event", msg([]byte("{}"))); !errors.Is(err, transport.ErrClosed) {
			t.Errorf("Publish after Close: %v, want ErrClosed", err)
		}
		if _, err := tr.Subscriber("h"); !errors.Is(err, transport.ErrClosed) {
			t.Errorf("Subscriber after Close: %v, want ErrClosed", err)
		}
		if err := tr.Start(testCtx(t)); !errors.Is(err, transport.ErrClosed) {
			t.Errorf("Start after Close: %v, want ErrClosed", err)
		}
	})
}

// Start fails, within its ctx, when no broker answers.
func TestStartWithoutBroker(t *testing.T) {
	tr, err := kafka.New(kafka.Config{Brokers: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tr.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	begin := time.Now()
	if err := tr.Start(ctx); err == nil || !strings.Contains(err.Error(), "herald/kafka: reach") {
		t.Errorf("Start with no broker: %v", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("Start took %v with a 500ms ctx", d)
	}
}
