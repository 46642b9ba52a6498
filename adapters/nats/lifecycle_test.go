package nats_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/middleware"
)

// A delayed retry is redelivered after the delay the bus asked for, not
// after the transport's NakDelay (an hour here): the nak carries it.
func TestDelayedRetryUsesTheBusDelay(t *testing.T) {
	eachBroker(t, func(t *testing.T, br broker) {
		tr := br.transport(t, func(c *nats.Config) { c.NakDelay, c.MaxNakDelay = time.Hour, time.Hour })
		b := bustest.New(t, bus.WithTransport(tr))
		r := &bustest.Recorder[OrderPlaced]{Fail: func(ctx context.Context, _ OrderPlaced) error {
			if m, _ := handlers.FromContext(ctx); m.Attempt == 1 {
				return errors.New("first attempt fails")
			}
			return nil
		}}
		if _, err := bus.Subscribe(b, "delay.bus", r.Handle, bus.WithRetry(middleware.RetryPolicy{
			MaxAttempts: 3, ImmediateAttempts: 1, RedeliveryDelay: 50 * time.Millisecond})); err != nil {
			t.Fatal(err)
		}
		publishOrders(t, b, 0, 1)
		r.Wait(t, 1, wait)
		if m := r.Metadata()[0]; m.Attempt != 2 {
			t.Errorf("handled at attempt %d, want 2 (the first redelivery)", m.Attempt)
		}
	})
}

// Handlers lists only the consumers Herald created, and DeleteHandler
// leaves any other consumer of the stream alone, one whose description
// names the same handler included.
func TestHandlersIgnoreForeignConsumers(t *testing.T) {
	eachBroker(t, func(t *testing.T, br broker) {
		tr := br.transport(t)
		b := bustest.New(t, bus.WithTransport(tr))
		bustest.Record[OrderPlaced](t, b, "mine")
		ctx := testCtx(t)
		stream, err := tr.JetStream().Stream(ctx, tr.Config().StreamName)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []jetstream.ConsumerConfig{
			{Durable: "foreign", FilterSubject: tr.Subject("herald_test.OrderPlaced")},
			{Durable: "lookalike", Description: `Herald handler "mine", topic "herald_test.OrderPlaced"`},
		} {
			if _, err := stream.CreateConsumer(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		hs, err := b.Handlers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(hs) != 1 || hs[0].Name != "mine" || len(hs[0].Topics) != 2 {
			t.Fatalf("Handlers = %+v, want only mine with its event and replay topics", hs)
		}
		if err := b.DeleteHandler(ctx, "mine"); !errors.Is(err, bus.ErrHandlerSubscribed) {
			t.Fatalf("DeleteHandler of a subscribed handler: %v", err)
		}
		found, err := tr.DeleteHandler(ctx, "mine") // the transport itself does not check
		if err != nil || !found {
			t.Fatalf("DeleteHandler = %v, %v", found, err)
		}
		for _, name := range []string{"foreign", "lookalike"} {
			if _, err := stream.Consumer(ctx, name); err != nil {
				t.Errorf("consumer %s after DeleteHandler: %v", name, err)
			}
		}
		if found, err := tr.DeleteHandler(ctx, "mine"); err != nil || found {
			t.Errorf("second DeleteHandler = %v, %v, want false, nil", found, err)
		}
	})
}
