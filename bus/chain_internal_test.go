package bus

import (
	"context"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/internal/membroker"
	"github.com/heraldbus/herald/transport"
)

// The chain a handler gets with no options (Recover, Correlation, Poison,
// Retry, Logging) allocates nothing on a successful delivery.
func TestDefaultChainAllocatesNothingOnSuccess(t *testing.T) {
	b, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	cfg := b.cfg
	if _, ok := cfg.poison.(*membroker.PoisonMap); ok {
		t.Fatal("the default bus should keep poison records in its memory transport")
	}
	terminal := func(*message.Message) ([]*message.Message, error) { return nil, nil }
	chain := buildChain(cfg, "h", cfg.retry, subConfig{concurrency: 1}, terminal)
	meta := handlers.Metadata{Event: transport.Event{ID: "1", Name: "e"}, Handler: "h", Attempt: 1}
	msg := event.NewMessage(context.Background(), meta, struct{}{}, nil, nil, handlers.JSON{})
	if n := testing.AllocsPerRun(1000, func() { _, _ = chain(msg) }); n != 0 {
		t.Errorf("default chain allocates %v times per successful delivery", n)
	}
}
