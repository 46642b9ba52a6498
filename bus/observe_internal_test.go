package bus

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/transport"
)

// Without providers, the chain a handler really gets (the default chain
// inside the always-on stats hooks) still allocates nothing on success.
func TestInstrumentedChainAllocatesNothingWithoutProviders(t *testing.T) {
	b, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	if b.obs != nil {
		t.Fatal("a bus without providers has an observer")
	}
	terminal := func(*message.Message) ([]*message.Message, error) { return nil, nil }
	st := &handlerStats{}
	chain := b.instrument("h", "e", st, terminal, func(h message.HandlerFunc) message.HandlerFunc {
		return buildChain(b.cfg, "h", b.cfg.retry, subConfig{concurrency: 1}, h)
	})
	meta := handlers.Metadata{Event: transport.Event{ID: "1", Name: "e"}, Handler: "h", Attempt: 1}
	msg := event.NewMessage(context.Background(), meta, struct{}{}, nil, nil, handlers.JSON{})
	if n := testing.AllocsPerRun(1000, func() { _, _ = chain(msg) }); n != 0 {
		t.Errorf("instrumented chain allocates %v times per successful delivery", n)
	}
	if got := st.handled.Load(); got < 1000 {
		t.Errorf("stats counted %d deliveries, want at least 1000", got)
	}
}

type allocEvent struct{ N int }

// publishAllocsBefore is what one event costs end to end in memory (Publish
// and its delivery to one handler, default chain) with no providers: the ID,
// the shared delivery and the handler's message (4 before observability was
// added, with a metadata map per delivery, which a chain without the user's
// middleware no longer gets).
const publishAllocsBefore = 3

// Without providers, Publish and a delivery allocate what they did before
// tracing, metrics and stats existed.
func TestPublishAllocationsUnchangedWithoutProviders(t *testing.T) {
	b, err := New()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	defer b.Close(ctx)
	done := make(chan struct{}, 1)
	if _, err := Subscribe(b, "h", func(context.Context, allocEvent) error { done <- struct{}{}; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(time.Minute) // made once: a timer per run would count
	n := testing.AllocsPerRun(2000, func() {
		if err := Publish(ctx, b, allocEvent{N: 1}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		case <-deadline:
			t.Fatal("the handler did not receive the events within a minute")
		}
	})
	if n != publishAllocsBefore {
		t.Errorf("an event costs %v allocations end to end, want %d", n, publishAllocsBefore)
	}
}
