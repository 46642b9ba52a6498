package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/middleware"
	"github.com/heraldbus/herald/transport"
)

// handler builds a watermill handler from a typed func, as the bus does.
func handler(fn func(context.Context, struct{ A int }) error) message.HandlerFunc {
	return event.New("t.Event", fn, handlers.JSON{}, false)
}

func ExampleRetry() {
	calls := 0
	h := middleware.Retry(middleware.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Millisecond}, nil)(
		handler(func(ctx context.Context, _ struct{ A int }) error {
			calls++
			if calls < 3 {
				return errors.New("flaky")
			}
			return nil
		}))
	_, err := h(delivery(context.Background()))
	fmt.Println(err, calls)
	// Output: <nil> 3
}

func ExamplePoison() {
	store := newStore()
	h := middleware.Poison(store, nil)(handler(func(context.Context, struct{ A int }) error {
		return handlers.Permanent(errors.New("bad data"))
	}))
	_, err := h(delivery(context.Background()))
	fmt.Println("acked:", err == nil, "records:", len(store.recs), store.recs[0].Error)
	// Output: acked: true records: 1 bad data
}

func ExampleTimeout() {
	h := middleware.Timeout(10 * time.Millisecond)(handler(func(ctx context.Context, _ struct{ A int }) error {
		<-ctx.Done()
		return ctx.Err()
	}))
	_, err := h(delivery(context.Background()))
	fmt.Println(errors.Is(err, middleware.ErrTimeout), errors.Is(err, context.DeadlineExceeded))
	// Output: true true
}

func ExampleRateLimit() {
	h := middleware.RateLimit(100, 1)(handler(func(context.Context, struct{ A int }) error { return nil }))
	start := time.Now()
	for range 3 {
		_, _ = h(delivery(context.Background()))
	}
	fmt.Println(time.Since(start) >= 15*time.Millisecond) // 3 at 100/s, burst 1: ≥ 2 gaps of 10ms
	// Output: true
}

func ExampleCircuitBreaker() {
	h := middleware.CircuitBreaker(middleware.BreakerConfig{Name: "billing", ConsecutiveFailures: 2, OpenFor: time.Minute}, nil)(
		handler(func(context.Context, struct{ A int }) error { return errors.New("payment API down") }))
	for i := range 3 {
		_, err := h(delivery(context.Background()))
		fmt.Println(i, errors.Is(err, middleware.ErrCircuitOpen), middleware.IsDeferred(err))
	}
	// Output:
	// 0 false false
	// 1 false false
	// 2 true true
}

func ExampleDedup() {
	calls := 0
	h := middleware.Dedup(middleware.NewMemoryDedup(0), time.Hour, nil)(
		handler(func(context.Context, struct{ A int }) error { calls++; return nil }))
	for range 2 {
		_, _ = h(delivery(context.Background())) // the same event ID twice
	}
	fmt.Println("handled", calls, "time")
	// Output: handled 1 time
}

func ExampleLogging() {
	// Logging(logger, slow) writes a Warn line per failed or slow attempt and a
	// Debug line per success, with handler, event, IDs, attempt and duration.
	h := middleware.Logging(nil, time.Second)(handler(func(context.Context, struct{ A int }) error { return nil }))
	_, err := h(delivery(context.Background()))
	fmt.Println(err)
	// Output: <nil>
}

func ExampleCorrelation() {
	h := middleware.Correlation(func(msg *message.Message) ([]*message.Message, error) {
		return []*message.Message{message.NewMessage("next", nil)}, nil
	})
	out, _ := h(delivery(context.Background()))
	fmt.Println(out[0].Metadata.Get(transport.KeyCausationID))
	// Output: ev-1
}
