package rabbitmq_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/adapters/rabbitmq"
	"github.com/heraldbus/herald/adapters/rabbitmq/rabbitmqtest"
)

// While the connection is down, a publish waits for it within its ctx and
// then fails (never a silent drop); once the broker is reachable again the
// transport has reconnected by itself, and a subscription of before the cut
// receives what is published then.
func TestPublishWhileDisconnected(t *testing.T) {
	c := &rabbitmqtest.Cable{}
	tr := started(t, rabbitmqtest.New(t), func(cfg *rabbitmq.Config) {
		cfg.AMQP.Dial = c.Dial
		cfg.ReconnectWait = 10 * time.Millisecond
		cfg.MaxReconnectWait = 50 * time.Millisecond
	})
	ch := subscribe(t, tr, "reconnect.h", 1)
	publish(t, tr, "before", nil)
	if m := receive(t, ch, 10*time.Second); m.UUID != "before" || !m.Ack() {
		t.Fatalf("got %s", m.UUID)
	}

	c.Cut(true)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	m := message.NewMessage("during", []byte(`{}`))
	m.SetContext(ctx)
	begin := time.Now()
	err := tr.Publisher().Publish(topic, m)
	if err == nil {
		t.Fatal("publish while disconnected returned nil")
	}
	// It waited for the connection until its ctx ended, or (if it ran before
	// the transport noticed the cut) failed on the dead socket at once.
	if d := time.Since(begin); d > 5*time.Second || errors.Is(err, context.DeadlineExceeded) && d < 250*time.Millisecond {
		t.Errorf("publish gave up after %v with a 300ms ctx: %v", d, err)
	}

	c.Mend()
	publish(t, tr, "after", nil) // waits for the reconnection within its ctx
	for {
		// "before" may come again: its ack may have been lost with the
		// connection (at least once). The failed publish never comes.
		m := receive(t, ch, 10*time.Second)
		m.Ack()
		if m.UUID == "after" {
			return
		}
		if m.UUID != "before" {
			t.Fatalf("after reconnecting got %s, want after", m.UUID)
		}
	}
}
