package bus_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/heraldbus/herald/adapters/memory"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/middleware"
)

type quoteReq struct{ SKU string }
type quoteResp struct{ Cents int }

func TestHandleRules(t *testing.T) {
	b := bustest.New(t)
	fn := func(context.Context, quoteReq) (quoteResp, error) { return quoteResp{}, nil }
	if _, err := bus.Handle(b, "a", fn, bus.WithRetry(middleware.RetryPolicy{MaxAttempts: 2})); !errors.Is(err, bus.ErrInvalidOption) {
		t.Errorf("WithRetry: %v", err)
	}
	if _, err := bus.Handle(b, "a", fn); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Handle(b, "a", fn); !errors.Is(err, bus.ErrDuplicateHandler) {
		t.Errorf("same name: %v", err)
	}
	if _, err := bus.Handle(b, "b", fn); !errors.Is(err, bus.ErrDuplicateHandler) {
		t.Errorf("same request type: %v", err)
	}
	if _, err := bus.Handle(b, "bad name", fn); !errors.Is(err, bus.ErrInvalidName) {
		t.Errorf("bad name: %v", err)
	}
}

// Close stops the responders after the requests in flight have answered;
// Request then says ErrClosed.
func TestCloseWaitsForRequestsInFlight(t *testing.T) {
	b, err := bus.New(bus.WithTransport(memory.New()))
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	var answered atomic.Bool
	if _, err := bus.Handle(b, "slow", func(ctx context.Context, r quoteReq) (quoteResp, error) {
		close(started)
		<-release
		answered.Store(true)
		return quoteResp{Cents: 1}, nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx := start(t, b, 5*time.Second)
	res := make(chan error, 1)
	go func() {
		_, err := bus.Request[quoteReq, quoteResp](ctx, b, quoteReq{})
		res <- err
	}()
	<-started
	closed := make(chan error, 1)
	go func() { closed <- b.Close(ctx) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned before the request in flight answered: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-res; err != nil {
		t.Fatalf("request in flight: %v", err)
	}
	if err := <-closed; err != nil || !answered.Load() {
		t.Fatalf("close: %v", err)
	}
	if _, err := bus.Request[quoteReq, quoteResp](ctx, b, quoteReq{}); !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

// Handle follows Subscribe's life: before Start it answers once the bus
// starts, Stop frees its name (and then nothing answers), and a closed bus
// refuses it. Request before Start is ErrNotStarted.
func TestHandleLifecycle(t *testing.T) {
	b, err := bus.New()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fn := func(_ context.Context, q quoteReq) (quoteResp, error) { return quoteResp{Cents: len(q.SKU)}, nil }
	sub, err := bus.Handle(b, "early", fn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Request[quoteReq, quoteResp](ctx, b, quoteReq{}); !errors.Is(err, bus.ErrNotStarted) {
		t.Errorf("before Start: %v", err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if r, err := bus.Request[quoteReq, quoteResp](ctx, b, quoteReq{SKU: "abcd"}); err != nil || r.Cents != 4 {
		t.Fatalf("after Start: %+v, %v", r, err)
	}
	if err := sub.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Request[quoteReq, quoteResp](ctx, b, quoteReq{}); !errors.Is(err, bus.ErrNoResponder) {
		t.Errorf("after Stop: %v", err)
	}
	if _, err := bus.Handle(b, "early", fn); err != nil {
		t.Errorf("the name is free after Stop: %v", err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Handle(b, "late", fn); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

// The handler's span continues the caller's trace, and a request made from
// a handler's ctx carries its correlation ID.
func TestRequestTraceAndCorrelation(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	b := bustest.New(t, bus.WithTracing(tp), bus.WithPropagator(propagation.TraceContext{}))
	got := make(chan handlers.Metadata, 1)
	if _, err := bus.Handle(b, "pricing", func(ctx context.Context, q quoteReq) (quoteResp, error) {
		m, _ := handlers.FromContext(ctx)
		got <- m
		return quoteResp{}, nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx, root := tp.Tracer("test").Start(context.Background(), "GET /price")
	if _, err := bus.Request[quoteReq, quoteResp](ctx, b, quoteReq{SKU: "x"}, bus.WithCorrelationID("order-7")); err != nil {
		t.Fatal(err)
	}
	root.End()
	if m := <-got; m.CorrelationID != "order-7" || m.Handler != "pricing" || m.Name != "bus_test.quoteReq" {
		t.Errorf("handler metadata %+v", m)
	}
	bustest.Eventually(t, 5*time.Second, func() bool { return len(rec.Ended()) == 2 }, "two spans")
	var process sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "process bus_test.quoteReq" {
			process = s
		}
	}
	if process == nil || process.SpanContext().TraceID() != root.SpanContext().TraceID() || process.Parent().SpanID() != root.SpanContext().SpanID() {
		t.Errorf("the handler's span %v is not a child of the caller's", process)
	}
}
