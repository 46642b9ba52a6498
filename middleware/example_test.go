package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

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
	// Logging(logger, slow) writes a Debug line per success and a Warn line
	// per failed or slow attempt, with handler, event, IDs and attempt. (The
	// duration, different on every run, is left out of this example's lines.)
	logger := zap.NewExample(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return withoutDuration{c} }))
	fail := false
	h := middleware.Logging(logger, time.Second)(handler(func(context.Context, struct{ A int }) error {
		if fail {
			return errors.New("payment API down")
		}
		return nil
	}))
	_, _ = h(delivery(context.Background()))
	fail = true
	_, _ = h(delivery(context.Background()))
	// Output:
	// {"level":"debug","msg":"handled","handler":"h","event":"t.Event","event_id":"ev-1","correlation_id":"","attempt":1}
	// {"level":"warn","msg":"handler attempt failed","handler":"h","event":"t.Event","event_id":"ev-1","correlation_id":"","attempt":1,"error":"payment API down"}
}

// withoutDuration drops the duration field from the lines it writes.
type withoutDuration struct{ zapcore.Core }

func (c withoutDuration) With(fs []zapcore.Field) zapcore.Core {
	return withoutDuration{c.Core.With(fs)}
}

func (c withoutDuration) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c withoutDuration) Write(e zapcore.Entry, fs []zapcore.Field) error {
	kept := fs[:0:0]
	for _, f := range fs {
		if f.Key != "duration" {
			kept = append(kept, f)
		}
	}
	return c.Core.Write(e, kept)
}

func ExampleCorrelation() {
	h := middleware.Correlation(func(msg *message.Message) ([]*message.Message, error) {
		return []*message.Message{message.NewMessage("next", nil)}, nil
	})
	out, _ := h(delivery(context.Background()))
	fmt.Println(out[0].Metadata.Get(transport.KeyCausationID))
	// Output: ev-1
}
