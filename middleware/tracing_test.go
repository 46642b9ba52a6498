package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/testkit"
	"github.com/heraldbus/herald/middleware"
	"github.com/heraldbus/herald/transport"
)

// The process span of a delivery through Poison and Retry shows each attempt
// with its outcome, and the delivery's outcome and status.
func TestTracingOutcomes(t *testing.T) {
	for _, c := range []struct {
		name     string
		fail     []error // the errors of the attempts, in order; then success
		store    error   // the poison store's error
		events   string
		outcome  string
		errored  bool
		chainErr bool
	}{
		{"handled", nil, nil, "1:handled", "handled", false, false},
		{"retried", []error{errors.New("a"), errors.New("b")}, nil,
			"1:retried:*errors.errorString 2:retried:*errors.errorString 3:handled", "handled", false, false},
		{"poisoned after retries", []error{errors.New("a"), errors.New("b"), errors.New("c"), errors.New("d")}, nil,
			"1:retried:*errors.errorString 2:retried:*errors.errorString 3:retried:*errors.errorString 4:poisoned:*errors.errorString", "poisoned", true, false},
		{"permanent", []error{handlers.Permanent(fmt.Errorf("wrapped: %w", &handlers.DecodeError{Reason: "x"}))}, nil,
			"1:poisoned:decode", "poisoned", true, false},
		{"panic", []error{&handlers.PanicError{Value: "boom"}, &handlers.PanicError{Value: "boom"}, nil}, nil,
			"1:retried:panic 2:retried:panic 3:handled", "handled", false, false},
		{"deferred", []error{middleware.Defer(errors.New("breaker open"))}, nil, "1:delayed:deferred", "delayed", false, true},
		{"poison store down", []error{handlers.Permanent(errors.New("bad"))}, errors.New("disk full"),
			"1:nacked:*errors.errorString", "nacked", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			defer tp.Shutdown(context.Background())
			tr, err := middleware.NewTracing(tp, propagation.TraceContext{}, "test")
			if err != nil {
				t.Fatal(err)
			}
			calls := 0
			handler := func(*message.Message) ([]*message.Message, error) {
				calls++
				if calls <= len(c.fail) {
					return nil, c.fail[calls-1]
				}
				return nil, nil
			}
			h := tr.Process(middleware.Poison(&store{fail: c.store}, nil)(middleware.Retry(fast, nil)(tr.Attempt(handler))))
			_, err = h(delivery(context.Background()))
			if (err != nil) != c.chainErr {
				t.Errorf("chain error %v", err)
			}
			spans := rec.Ended()
			if len(spans) != 1 {
				t.Fatalf("%d spans", len(spans))
			}
			s := spans[0]
			if got := testkit.AttemptEvents(s); got != c.events {
				t.Errorf("attempt events %q, want %q", got, c.events)
			}
			if s.Name() != "process t.Event" || s.SpanKind() != trace.SpanKindConsumer {
				t.Errorf("span %q kind %v", s.Name(), s.SpanKind())
			}
			var oc string
			for _, a := range s.Attributes() {
				if a.Key == middleware.AttrOutcome {
					oc = a.Value.AsString()
				}
			}
			if oc != c.outcome {
				t.Errorf("outcome %q, want %q", oc, c.outcome)
			}
			if (s.Status().Code == codes.Error) != c.errored {
				t.Errorf("status %+v", s.Status())
			}
		})
	}
}

// The trace context in the message metadata is the parent of the process
// span; the span is active in the handler's ctx; Inject writes traceparent.
func TestTracingContinuesTheMetadataTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	tr, err := middleware.NewTracing(tp, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	pctx, pub := tr.StartPublish(context.Background(), transport.Event{ID: "ev-1", Name: "t.Event"}, 1)
	msg := delivery(context.Background())
	tr.Inject(pctx, msg.Metadata)
	tr.EndPublish(pub, nil)
	if !strings.HasPrefix(msg.Metadata[transport.KeyTraceParent], "00-"+pub.SpanContext().TraceID().String()) {
		t.Fatalf("metadata %v lacks the W3C traceparent of the publish", msg.Metadata)
	}
	var inHandler trace.SpanContext
	h := tr.Process(tr.Attempt(func(m *message.Message) ([]*message.Message, error) {
		inHandler = trace.SpanContextFromContext(m.Context())
		return nil, nil
	}))
	if _, err := h(msg); err != nil {
		t.Fatal(err)
	}
	var process sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "process t.Event" {
			process = s
		}
	}
	if process == nil || process.Parent().SpanID() != pub.SpanContext().SpanID() || !process.Parent().IsRemote() {
		t.Fatalf("process span %v is not a child of the publish %s", process, pub.SpanContext().SpanID())
	}
	if inHandler.SpanID() != process.SpanContext().SpanID() {
		t.Errorf("the handler's ctx has span %s, want the process span", inHandler.SpanID())
	}
	if _, err := middleware.NewTracing(nil, nil, ""); !errors.Is(err, transport.ErrInvalidOption) {
		t.Errorf("NewTracing(nil) = %v", err)
	}
}

func TestErrorType(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("x"), "*errors.errorString"},
		{fmt.Errorf("ctx: %w", handlers.Permanent(&myErr{})), "*middleware_test.myErr"},
		{&middleware.RetryError{Err: &myErr{}}, "*middleware_test.myErr"},
		{fmt.Errorf("%w: x", middleware.ErrTimeout), "timeout"},
		{&handlers.PanicError{Value: 1}, "panic"},
		{middleware.Defer(nil), "deferred"},
		{fmt.Errorf("%w", middleware.ErrPoisonStore), "poison_store"},
		{context.Canceled, "canceled"},
		{fmt.Errorf("w: %w", context.DeadlineExceeded), "deadline_exceeded"},
	} {
		if got := middleware.ErrorType(c.err); got != c.want {
			t.Errorf("ErrorType(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

type myErr struct{}

func (*myErr) Error() string { return "mine" }
