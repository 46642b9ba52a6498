package middleware

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/transport"
)

// TracerName is the instrumentation scope of Herald's spans.
const TracerName = "github.com/heraldbus/herald"

// Tracing makes OpenTelemetry spans of publishes and deliveries, following
// the messaging conventions, and carries the trace context in the message
// metadata, so that a trace crosses every transport. Build one with
// [NewTracing]; bus.WithTracing does, and places it in every handler's chain.
// It is safe for concurrent use.
//
//   - A publish is a producer span "publish <event>" (a child of the span in
//     the publisher's ctx); its context travels in the metadata (W3C
//     traceparent with the default propagator).
//   - A delivery to a handler is a consumer span "process <event>" whose
//     parent is the publish span's context, and which is active in the
//     handler's ctx: an event the handler publishes continues the trace.
//   - Each attempt is an event "attempt" on that span, with its number, its
//     error (error.type, exception.message) and its outcome: handled,
//     retried, poisoned, delayed or nacked ([AttrOutcome]).
type Tracing struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	system attribute.KeyValue
}

// NewTracing returns tracing with spans from tp. prop carries the trace
// context in message metadata; nil means the global propagator
// (otel.GetTextMapPropagator) if one is set when NewTracing is called, and W3C
// trace context (propagation.TraceContext) otherwise, so that traces cross
// processes without further setup. system is the messaging.system attribute
// (the transport's name, as transport.SystemNamer gives it); "" means
// "herald". A nil tp is an error wrapping transport.ErrInvalidOption.
func NewTracing(tp trace.TracerProvider, prop propagation.TextMapPropagator, system string) (*Tracing, error) {
	if tp == nil {
		return nil, fmt.Errorf("%w: nil TracerProvider", transport.ErrInvalidOption)
	}
	if prop == nil {
		prop = otel.GetTextMapPropagator()
		if len(prop.Fields()) == 0 {
			prop = propagation.TraceContext{}
		}
	}
	if system == "" {
		system = "herald"
	}
	return &Tracing{tracer: tp.Tracer(TracerName), prop: prop, system: AttrSystem.String(system)}, nil
}

// StartPublish starts the producer span of publishing ev (n events of ev.Name
// when n > 1: a batch, whose span has no message ID), as a child of the span
// in ctx, and returns ctx with it. End it with [Tracing.EndPublish].
func (t *Tracing) StartPublish(ctx context.Context, ev transport.Event, n int) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{
		t.system,
		AttrDestination.String(ev.Name),
		AttrOperationName.String("publish"),
		AttrOperationType.String("send"),
	}
	if n > 1 {
		attrs = append(attrs, AttrBatchCount.Int(n))
	} else {
		attrs = append(attrs, AttrMessageID.String(ev.ID), AttrConversationID.String(ev.CorrelationID))
	}
	return t.tracer.Start(ctx, "publish "+ev.Name, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
}

// StartReplay starts the producer span of replaying a poison record to its
// handler, as a child of the span in ctx and linked to the span that
// published the event first (read from the record's metadata), and returns
// ctx with it. End it with [Tracing.EndPublish].
func (t *Tracing) StartReplay(ctx context.Context, rec transport.PoisonRecord) (context.Context, trace.Span) {
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(t.system,
			AttrDestination.String(rec.Event.Name),
			AttrConsumerGroup.String(rec.Handler),
			AttrMessageID.String(rec.Event.ID),
			AttrConversationID.String(rec.Event.CorrelationID),
			AttrOperationName.String("replay"),
			AttrOperationType.String("send"),
			attribute.String("herald.poison.id", rec.ID)),
	}
	orig := trace.SpanContextFromContext(t.prop.Extract(context.Background(), metadataCarrier(rec.Metadata)))
	if orig.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: orig}))
	}
	return t.tracer.Start(ctx, "replay "+rec.Event.Name, opts...)
}

// Inject writes the trace context of ctx into md.
func (t *Tracing) Inject(ctx context.Context, md message.Metadata) {
	t.prop.Inject(ctx, metadataCarrier(md))
}

// EndPublish ends a span of [Tracing.StartPublish] or [Tracing.StartReplay],
// with err as its status.
func (t *Tracing) EndPublish(span trace.Span, err error) {
	if err != nil {
		span.SetAttributes(AttrErrorType.String(ErrorType(err)))
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// processKey finds a delivery's *processSpan in its context.
type processKey struct{}

// processSpan is the handler's context during one delivery: the consumer
// span is active in it, and the failed attempt waiting for its outcome.
type processSpan struct {
	context.Context
	span     trace.Span
	pending  bool // a failed attempt whose outcome is not known yet
	attempt  int
	err      error
	at       time.Time
	lastErr  error
	attempts int
}

func (p *processSpan) Value(key any) any {
	if key == (processKey{}) {
		return p
	}
	return p.Context.Value(key)
}

// flush adds the pending attempt's event, with its outcome.
func (p *processSpan) flush(outcome string) {
	if !p.pending {
		return
	}
	p.pending = false
	p.span.AddEvent("attempt", trace.WithTimestamp(p.at), trace.WithAttributes(
		AttrAttempt.Int(p.attempt),
		AttrOutcome.String(outcome),
		AttrErrorType.String(ErrorType(p.err)),
		attribute.String("exception.message", p.err.Error()),
	))
}

// Process is the middleware of a whole delivery: it starts the consumer span
// "process <event>" (parent: the trace context in the message's metadata),
// makes it active in the message's context for the chain below, and ends it
// with the delivery's outcome, its number of attempts and, on failure, the
// last error. Place it outside Poison (bus.WithTracing puts it outermost),
// and [Tracing.Attempt] inside Retry.
func (t *Tracing) Process(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) (out []*message.Message, err error) {
		orig := msg.Context()
		attrs := make([]attribute.KeyValue, 0, 8)
		attrs = append(attrs, t.system, AttrOperationName.String("process"), AttrOperationType.String("process"))
		name := msg.Metadata.Get(transport.KeyEvent)
		if meta, ok := event.Metadata(msg); ok {
			name = meta.Name
			attrs = append(attrs,
				AttrConsumerGroup.String(meta.Handler),
				AttrMessageID.String(meta.ID),
				AttrConversationID.String(meta.CorrelationID),
				AttrAttempt.Int(meta.Attempt))
		}
		attrs = append(attrs, AttrDestination.String(name))
		parent := t.prop.Extract(orig, metadataCarrier(msg.Metadata))
		ctx, span := t.tracer.Start(parent, "process "+name,
			trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
		p := &processSpan{Context: ctx, span: span}
		msg.SetContext(p)
		normal := false
		defer func() {
			msg.SetContext(orig)
			oc := outcome(err, normal, event.Poisoned(msg))
			p.flush(oc)
			last := p.lastErr
			if err != nil {
				last = err
			}
			span.SetAttributes(AttrOutcome.String(oc), AttrAttempts.Int(p.attempts))
			switch {
			case !normal:
				span.SetStatus(codes.Error, "handler called runtime.Goexit")
			case oc != OutcomeHandled && oc != OutcomeDelayed && last != nil:
				span.SetAttributes(AttrErrorType.String(ErrorType(last)))
				span.SetStatus(codes.Error, last.Error())
			}
			span.End()
		}()
		out, err = h(msg)
		normal = true
		return out, err
	}
}

// Attempt is the middleware of one attempt: it adds an "attempt" event to the
// delivery's span (started by [Tracing.Process]) with the attempt number and,
// for a failure, its error and outcome (known at the next attempt, or when
// the delivery ends). Place it inside Retry; bus.WithTracing puts it around
// the handler. Without Process outside, it does nothing.
func (t *Tracing) Attempt(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		p, _ := msg.Context().Value(processKey{}).(*processSpan)
		if p == nil {
			return h(msg)
		}
		p.flush(OutcomeRetried)
		p.attempts++
		attempt := event.Attempt(msg)
		out, err := h(msg)
		if err == nil {
			p.span.AddEvent("attempt", trace.WithAttributes(AttrAttempt.Int(attempt), AttrOutcome.String(OutcomeHandled)))
			return out, nil
		}
		p.pending, p.attempt, p.err, p.at, p.lastErr = true, attempt, err, time.Now(), err
		return out, err
	}
}
