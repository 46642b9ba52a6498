package bus_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/heraldbus/herald/bus"
)

// BenchEvent is the benchmark event: 5 fields, about 180 bytes of JSON.
type BenchEvent struct {
	OrderID    string    `json:"order_id"`
	CustomerID string    `json:"customer_id"`
	Amount     int64     `json:"amount_cents"`
	Currency   string    `json:"currency"`
	PlacedAt   time.Time `json:"placed_at"`
}

func benchEvent(i int) BenchEvent {
	return BenchEvent{OrderID: fmt.Sprintf("order-%012d", i), CustomerID: "customer-0000000000042",
		Amount: 129900, Currency: "EUR", PlacedAt: time.Date(2026, 11, 23, 14, 0, 0, 0, time.UTC)}
}

// counter closes done when it has been hit target times.
type counter struct {
	n      atomic.Int64
	target int64
	done   chan struct{}
}

func newCounter(target int) *counter {
	return &counter{target: int64(target), done: make(chan struct{})}
}

func (c *counter) hit() {
	if c.n.Add(1) == c.target {
		close(c.done)
	}
}

func (c *counter) wait(b *testing.B) {
	select {
	case <-c.done:
	case <-time.After(time.Minute):
		b.Fatalf("only %d of %d deliveries", c.n.Load(), c.target)
	}
}

var handlerCounts = []int{1, 10}

// BenchmarkPublish measures one event published and handled by every handler
// (ns/op and allocs/op are per event, all handlers included), for Herald with
// its default middleware chain, watermill's cqrs EventBus over GoChannel, and a
// plain channel hop per handler (the floor).
func BenchmarkPublish(b *testing.B) {
	for _, n := range handlerCounts {
		b.Run(fmt.Sprintf("herald/handlers=%d", n), func(b *testing.B) { benchHerald(b, n) })
		b.Run(fmt.Sprintf("cqrs-gochannel/handlers=%d", n), func(b *testing.B) { benchCQRS(b, n) })
		b.Run(fmt.Sprintf("chan/handlers=%d", n), func(b *testing.B) { benchChan(b, n) })
	}
}

func benchHerald(b *testing.B, handlers int) {
	ctx := context.Background()
	hb, err := bus.New()
	if err != nil {
		b.Fatal(err)
	}
	c := newCounter(b.N * handlers)
	for i := range handlers {
		if _, err := bus.Subscribe(hb, fmt.Sprintf("h%d", i), func(ctx context.Context, e BenchEvent) error {
			c.hit()
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	if err := hb.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = hb.Close(ctx) }()
	e := benchEvent(1)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := bus.Publish(ctx, hb, e); err != nil {
			b.Fatal(err)
		}
	}
	c.wait(b)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func benchCQRS(b *testing.B, handlers int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger := watermill.NopLogger{}
	ps := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 1024}, logger)
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	if err != nil {
		b.Fatal(err)
	}
	marshaler := cqrs.JSONMarshaler{}
	eb, err := cqrs.NewEventBusWithConfig(ps, cqrs.EventBusConfig{
		GeneratePublishTopic: func(p cqrs.GenerateEventPublishTopicParams) (string, error) { return p.EventName, nil },
		Marshaler:            marshaler, Logger: logger,
	})
	if err != nil {
		b.Fatal(err)
	}
	ep, err := cqrs.NewEventProcessorWithConfig(router, cqrs.EventProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.EventProcessorGenerateSubscribeTopicParams) (string, error) { return p.EventName, nil },
		SubscriberConstructor: func(cqrs.EventProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return ps, nil
		},
		Marshaler: marshaler, Logger: logger,
	})
	if err != nil {
		b.Fatal(err)
	}
	c := newCounter(b.N * handlers)
	for i := range handlers {
		if err := ep.AddHandlers(cqrs.NewEventHandler(fmt.Sprintf("h%d", i), func(ctx context.Context, e *BenchEvent) error {
			c.hit()
			return nil
		})); err != nil {
			b.Fatal(err)
		}
	}
	go func() { _ = router.Run(ctx) }()
	<-router.Running()
	defer func() { _ = router.Close() }()
	e := benchEvent(1)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := eb.Publish(ctx, &e); err != nil {
			b.Fatal(err)
		}
	}
	c.wait(b)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func benchChan(b *testing.B, handlers int) {
	c := newCounter(b.N * handlers)
	chans := make([]chan BenchEvent, handlers)
	for i := range chans {
		chans[i] = make(chan BenchEvent, 1024)
		go func(ch chan BenchEvent) {
			for range ch {
				c.hit()
			}
		}(chans[i])
	}
	e := benchEvent(1)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for _, ch := range chans {
			ch <- e
		}
	}
	c.wait(b)
	b.StopTimer()
	for _, ch := range chans {
		close(ch)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
