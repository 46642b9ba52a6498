package memory_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/adapters/memory"
	"github.com/heraldbus/herald/transport"
)

// A message nacked with transport.KeyRedeliveryDelay comes back after that
// delay, not after the transport's own (5s here), and frees its slot
// meanwhile: the next message is handed out before the nacked one is due.
func TestWatermillSubscriberHonoursTheRedeliveryDelay(t *testing.T) {
	tr := memory.New(memory.WithRedeliveryDelay(5 * time.Second))
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, err := tr.Subscriber("h")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ch, err := sub.Subscribe(ctx, "topic")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"first", "second"} {
		if err := tr.Publisher().Publish("topic", message.NewMessage(id, []byte("p"))); err != nil {
			t.Fatal(err)
		}
	}
	next := func() *message.Message {
		t.Helper()
		select {
		case m := <-ch:
			return m
		case <-ctx.Done():
			t.Fatal("no message within 10s: the delay asked for was not honoured")
			return nil
		}
	}
	m := next()
	m.Metadata.Set(transport.KeyRedeliveryDelay, (20 * time.Millisecond).String())
	m.Nack()
	if m := next(); m.UUID != "second" {
		t.Fatalf("after the nack got %q, want the next message, second", m.UUID)
	} else {
		m.Ack()
	}
	begin := time.Now()
	m = next()
	if m.UUID != "first" || m.Metadata.Get(transport.KeyDeliveryCount) != "2" {
		t.Errorf("redelivered %q with delivery count %q, want first, 2", m.UUID, m.Metadata.Get(transport.KeyDeliveryCount))
	}
	if d := time.Since(begin); d > 4*time.Second {
		t.Errorf("redelivered after %v: the transport's own 5s delay, not the 20ms asked for", d)
	}
	m.Ack()
}

func TestRedeliveryDelayParsing(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  time.Duration
		ok    bool
	}{
		{"", 0, false},
		{"1.5s", 1500 * time.Millisecond, true},
		{"0s", 0, false},
		{"-1s", 0, false},
		{"soon", 0, false},
	} {
		t.Run(tc.value, func(t *testing.T) {
			m := message.NewMessage("id", nil)
			if tc.value != "" {
				m.Metadata.Set(transport.KeyRedeliveryDelay, tc.value)
			}
			if d, ok := transport.RedeliveryDelay(m); d != tc.want || ok != tc.ok {
				t.Errorf("RedeliveryDelay(%q) = %v, %v, want %v, %v", tc.value, d, ok, tc.want, tc.ok)
			}
		})
	}
}
