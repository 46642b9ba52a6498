package bus_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/handlers"
)

// On the in-process path every handler of an event gets its own delivery:
// middleware that writes its message's Metadata, and a handler that changes
// its value or its metadata, are seen by no other handler, whether the
// publish gave metadata or not, and whether the middleware is the bus's or
// the handler's own.
func TestInProcessDeliveriesAreIsolated(t *testing.T) {
	type seen struct {
		handler string
		md      map[string]string // the message's Metadata before the write
		val     ping
		meta    handlers.Metadata
	}
	got := make(chan seen, 64)
	// write records a message's Metadata as it arrives, then scribbles on it.
	write := func(name string) message.HandlerMiddleware {
		return func(h message.HandlerFunc) message.HandlerFunc {
			return func(msg *message.Message) ([]*message.Message, error) {
				got <- seen{handler: name + "/mw", md: maps.Clone(map[string]string(msg.Metadata))}
				msg.Metadata.Set("k", "changed by "+name)
				msg.Metadata.Set("written-by", name)
				return h(msg)
			}
		}
	}
	b := newMemBus(t, 64, bus.WithMiddleware(write("bus")))
	handler := func(name string) func(context.Context, ping) error {
		return func(ctx context.Context, e ping) error {
			meta, _ := handlers.FromContext(ctx)
			got <- seen{handler: name, val: e, meta: meta}
			e.N = -1 // a copy: no other handler may see it
			return nil
		}
	}
	for _, name := range []string{"iso.a", "iso.b"} {
		if _, err := bus.Subscribe(b, name, handler(name), bus.WithHandlerMiddleware(write(name))); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })

	for round, opts := range [][]bus.PublishOption{{bus.WithMetadata("k", "v")}, nil} {
		if err := bus.Publish(ctx, b, ping{N: 7}, opts...); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{}
		if round == 0 {
			want["k"] = "v"
		}
		// Per handler: the bus's middleware, the handler's, the handler.
		for range 6 {
			var s seen
			select {
			case s = <-got:
			case <-ctx.Done():
				t.Fatalf("round %d: deliveries missing", round)
			}
			switch s.handler {
			case "iso.a", "iso.b":
				if s.val.N != 7 || s.meta.Handler != s.handler || s.meta.Attempt != 1 {
					t.Errorf("round %d: %s got %+v with %+v", round, s.handler, s.val, s.meta)
				}
				continue
			case "bus/mw":
				// The bus's middleware runs first on each delivery: it must
				// see the metadata as published.
				if !maps.Equal(s.md, want) {
					t.Errorf("round %d: the bus's middleware saw %v, want %v", round, s.md, want)
				}
			default:
				// The handler's middleware sees what the bus's wrote on this
				// delivery, never what another handler's chain wrote.
				w := maps.Clone(want)
				w["k"], w["written-by"] = "changed by bus", "bus"
				if !maps.Equal(s.md, w) {
					t.Errorf("round %d: %s saw %v, want %v", round, s.handler, s.md, w)
				}
			}
		}
	}
}
