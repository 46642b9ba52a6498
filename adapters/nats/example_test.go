package nats_test

import (
	"context"
	"fmt"
	"time"

	"github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/bus"
)

type OrderShipped struct {
	OrderID string `json:"order_id"`
}

func (OrderShipped) EventName() string { return "example.OrderShipped" }

// A bus over NATS JetStream: only the transport differs from a bus on memory.
func Example() {
	srv, err := natstest.Start() // an embedded nats-server; use your server's URL instead
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	t, err := nats.New(nats.Config{URL: srv.URL()})
	if err != nil {
		panic(err) // e.g. the server is unreachable
	}
	b, err := bus.New(bus.WithTransport(t)) // the bus owns t
	if err != nil {
		panic(err)
	}
	got := make(chan string, 1)
	if _, err := bus.Subscribe(b, "notify.email", func(ctx context.Context, e OrderShipped) error {
		got <- e.OrderID
		return nil
	}); err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil { // creates the streams and the durable consumer
		panic(err)
	}
	if err := bus.Publish(ctx, b, OrderShipped{OrderID: "o-1"}); err != nil { // returns after the PubAck
		panic(err)
	}
	fmt.Println("handled", <-got)
	if err := b.Close(ctx); err != nil {
		panic(err)
	}
	// Output: handled o-1
}
