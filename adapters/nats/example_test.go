package nats_test

import (
	"context"
	"fmt"
	"time"

	"github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/transport"
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

// Ordering by key across replicas: each bus below is a replica of the
// service (its own transport and connection); the handler's replicas share
// each partition of the event, so one order's events are handled one after
// another, in publish order, whichever replica takes them. EventSubjects
// shows where the events of a type are: a publisher in another language
// sends a keyed event to the partition transport.KeyPartition gives.
func Example_orderingByKey() {
	srv, err := natstest.Start()
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	got := make(chan string, 3) // a key's events come one at a time: in handling order
	var replicas []*bus.Bus
	var tr *nats.Transport
	for range 2 {
		t, err := nats.New(nats.Config{URL: srv.URL(), Partitions: 4})
		if err != nil {
			panic(err)
		}
		tr = t
		b, err := bus.New(bus.WithTransport(t))
		if err != nil {
			panic(err)
		}
		if _, err := bus.Subscribe(b, "billing.invoice", func(ctx context.Context, e OrderShipped) error {
			got <- e.OrderID
			return nil
		}, bus.WithOrderingByKey(), bus.WithConcurrency(4)); err != nil {
			panic(err)
		}
		if err := b.Start(ctx); err != nil {
			panic(err)
		}
		replicas = append(replicas, b)
	}
	fmt.Println(tr.EventSubjects("example.OrderShipped"))
	fmt.Println("partition of o-1:", transport.KeyPartition("o-1", 4))
	for i := range 3 {
		if err := bus.Publish(ctx, replicas[0], OrderShipped{OrderID: fmt.Sprint("o-1 step ", i)}, bus.WithOrderingKey("o-1")); err != nil {
			panic(err)
		}
	}
	for range 3 {
		fmt.Println(<-got)
	}
	for _, b := range replicas {
		if err := b.Close(ctx); err != nil {
			panic(err)
		}
	}
	// Output:
	// [herald.example.OrderShipped herald._keyed.*.example.OrderShipped]
	// partition of o-1: 0
	// o-1 step 0
	// o-1 step 1
	// o-1 step 2
}
