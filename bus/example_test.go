package bus_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/middleware"
	"github.com/heraldbus/herald/transport"
)

type OrderPlaced struct {
	ID    string `json:"id"`
	Cents int64  `json:"cents"`
}

type OrderShipped struct {
	ID string `json:"id"`
}

func Example() {
	ctx := context.Background()
	b, err := bus.New() // memory transport, default reliability chain
	if err != nil {
		panic(err)
	}
	done := make(chan struct{})
	_, err = bus.Subscribe(b, "billing.charge-card", func(ctx context.Context, e OrderPlaced) error {
		fmt.Printf("charging %d cents for %s\n", e.Cents, e.ID)
		close(done)
		return nil
	})
	if err != nil {
		panic(err)
	}
	if err := b.Start(ctx); err != nil {
		panic(err)
	}
	if err := bus.Publish(ctx, b, OrderPlaced{ID: "o-1", Cents: 4900}); err != nil {
		panic(err)
	}
	<-done
	if err := b.Close(ctx); err != nil {
		panic(err)
	}
	// Output: charging 4900 cents for o-1
}

// A handler that publishes with its ctx links the new event to the one it
// handles: same correlation ID, causation ID = the handled event's ID.
func ExamplePublish_correlation() {
	ctx := context.Background()
	b, _ := bus.New()
	shipped := make(chan handlers.Metadata, 1)
	_, _ = bus.Subscribe(b, "shipping", func(ctx context.Context, e OrderPlaced) error {
		return bus.Publish(ctx, b, OrderShipped{ID: e.ID})
	})
	_, _ = bus.Subscribe(b, "notify", func(ctx context.Context, e OrderShipped) error {
		m, _ := handlers.FromContext(ctx)
		shipped <- m
		return nil
	})
	_ = b.Start(ctx)
	defer b.Close(ctx)
	_ = bus.Publish(ctx, b, OrderPlaced{ID: "o-1"}, bus.WithCorrelationID("checkout-42"))
	m := <-shipped
	fmt.Println(m.Name, "correlation:", m.CorrelationID, "caused by another event:", m.CausationID != "")
	// Output: bus_test.OrderShipped correlation: checkout-42 caused by another event: true
}

// A permanent error goes to the poison queue at once; after a fix, the record
// is replayed to the handler that failed, and only to it.
func ExamplePoisonQueue_Replay() {
	ctx := context.Background()
	b, _ := bus.New()
	var fixed atomic.Bool
	handled := make(chan string, 1)
	_, _ = bus.Subscribe(b, "email", func(ctx context.Context, e OrderPlaced) error {
		if !fixed.Load() {
			return bus.Permanent(errors.New("template missing"))
		}
		handled <- e.ID
		return nil
	})
	_ = b.Start(ctx)
	defer b.Close(ctx)
	_ = bus.Publish(ctx, b, OrderPlaced{ID: "o-9"})

	// The record is written just after the handler returns: look for it
	// until it is there, or until a deadline.
	deadline, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var recs []transport.PoisonRecord
	for len(recs) == 0 {
		select {
		case <-deadline.Done():
			fmt.Println("no poison record:", deadline.Err())
			return
		case <-time.After(time.Millisecond):
		}
		recs, _ = b.Poison().List(ctx, "email")
	}
	fmt.Println("poisoned:", recs[0].Handler, recs[0].Error, "attempts:", recs[0].Attempts)
	fixed.Store(true)
	_ = b.Poison().Replay(ctx, recs[0].ID)
	select {
	case id := <-handled:
		fmt.Println("replayed:", id)
	case <-deadline.Done():
		fmt.Println("not replayed:", deadline.Err())
	}
	// Output:
	// poisoned: email template missing attempts: 1
	// replayed: o-9
}

func ExampleWithRetry() {
	ctx := context.Background()
	b, _ := bus.New()
	attempts := 0
	done := make(chan int)
	_, _ = bus.Subscribe(b, "flaky", func(ctx context.Context, e OrderPlaced) error {
		attempts++
		if attempts < 3 {
			return errors.New("try again")
		}
		m, _ := handlers.FromContext(ctx)
		done <- m.Attempt
		return nil
	}, bus.WithRetry(middleware.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Millisecond}))
	_ = b.Start(ctx)
	defer b.Close(ctx)
	_ = bus.Publish(ctx, b, OrderPlaced{ID: "o-2"})
	fmt.Println("succeeded on attempt", <-done)
	// Output: succeeded on attempt 3
}
