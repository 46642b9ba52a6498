package bus

import (
	"context"
	"maps"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/middleware"
	"github.com/heraldbus/herald/transport"
)

// Observability: OpenTelemetry traces and metrics when their providers are
// given (WithTracing, WithMetrics), and the per-handler counters of Stats,
// always. With no provider the bus makes no span or metric call and its hot
// path allocates what it did without them.

// observeConfig holds the observability options.
type observeConfig struct {
	tracer     trace.TracerProvider
	propagator propagation.TextMapPropagator
	meter      metric.MeterProvider
}

// WithTracing makes the bus trace with OpenTelemetry spans from tp, following
// the messaging conventions (see [middleware.Tracing]): a producer span
// "publish <event>" per Publish (a child of the span in Publish's ctx), whose
// context travels with the event in its metadata (the W3C traceparent header
// on NATS); a consumer span "process <event>" per delivery to a handler, whose
// parent is that context, with an event per attempt (its number, error, and
// whether it was retried, delayed or poisoned) and the delivery's outcome;
// an event the handler publishes with its ctx continues the trace; a
// [PoisonQueue.Replay] is a span "replay <event>" linked to the event's
// original trace. The default middleware's log lines then carry trace_id and
// span_id. The trace context is written with the propagator of
// [WithPropagator], by default the global one (or W3C trace context when none
// is set globally); it overwrites metadata of the same keys given with
// [WithMetadata]. A nil tp is an error wrapping [ErrInvalidOption].
func WithTracing(tp trace.TracerProvider) Option {
	return busOption(func(c *config) error { return setNonNil(&c.observe.tracer, "TracerProvider", tp) })
}

// WithPropagator sets how [WithTracing] carries the trace context in event
// metadata; the default is otel.GetTextMapPropagator() as it is when the bus
// is built, or propagation.TraceContext{} if no global propagator is set. A
// nil p is an error wrapping [ErrInvalidOption].
func WithPropagator(p propagation.TextMapPropagator) Option {
	return busOption(func(c *config) error { return setNonNil(&c.observe.propagator, "propagator", p) })
}

// WithMetrics makes the bus record OpenTelemetry metrics with a meter of mp:
// events published and consumed, the processing duration histogram (the
// messaging conventions' buckets), attempts, retries, poisoned, in flight,
// and an observable gauge of each handler's backlog, by handler and event
// name (see [middleware.Metrics] for the instruments). The backlog gauge
// asks the transport at each collection ([transport.BacklogReporter]; one
// consumer info per handler and topic on NATS), bounded by the collection's
// ctx or 5s; it stops at Close. A nil mp, or a provider that refuses an
// instrument, is an error wrapping [ErrInvalidOption].
func WithMetrics(mp metric.MeterProvider) Option {
	return busOption(func(c *config) error { return setNonNil(&c.observe.meter, "MeterProvider", mp) })
}

// observer is the bus's telemetry; nil when neither provider is set.
type observer struct {
	tracing *middleware.Tracing // nil without WithTracing
	metrics *middleware.Metrics // nil without WithMetrics
	backlog metric.Registration // the backlog gauge's callback
}

// backlogTimeout bounds a collection's backlog queries when its ctx has no
// deadline.
const backlogTimeout = 5 * time.Second

// initObserve sets b.system and, when a provider is set, b.obs.
func (b *Bus) initObserve() error {
	b.system = "herald"
	if sn, ok := b.cfg.transport.(transport.SystemNamer); ok && sn.System() != "" {
		b.system = sn.System()
	}
	oc := b.cfg.observe
	if oc.tracer == nil && oc.meter == nil {
		return nil
	}
	o := &observer{}
	var err error
	if oc.tracer != nil {
		if o.tracing, err = middleware.NewTracing(oc.tracer, oc.propagator, b.system); err != nil {
			return err
		}
	}
	if oc.meter != nil {
		if o.metrics, err = middleware.NewMetrics(oc.meter, b.system); err != nil {
			return err
		}
		if _, ok := b.cfg.transport.(transport.BacklogReporter); ok {
			if o.backlog, err = o.metrics.ObserveBacklog(b.observeBacklog); err != nil {
				return invalidErr(err)
			}
		}
	}
	b.obs = o
	return nil
}

// observeBacklog reports the backlog of every handler, for the gauge.
func (b *Bus) observeBacklog(ctx context.Context, report func(handler, eventName string, n int64)) error {
	if b.state.Load() >= stateClosing {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, backlogTimeout)
		defer cancel()
	}
	var first error
	for _, s := range b.subscriptions() {
		n, err := b.backlog(ctx, s.name, s.event)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		report(s.name, s.event, n)
	}
	return first
}

// stopObserving unregisters the backlog gauge; the bus calls it at Close.
func (b *Bus) stopObserving() {
	if b.obs != nil && b.obs.backlog != nil {
		_ = b.obs.backlog.Unregister()
	}
}

// instrument builds a handler's chain with build, adding the stats (always)
// and the telemetry the bus has around the whole chain and around the typed
// handler (terminal): tracing's, then metrics', then the stats' hooks,
// outermost first, so that metrics are recorded with the span active.
func (b *Bus) instrument(name, eventName string, st *handlerStats, terminal message.HandlerFunc,
	build func(message.HandlerFunc) message.HandlerFunc) message.HandlerFunc {
	inner := st.attempt(terminal)
	var process message.HandlerMiddleware
	if o := b.obs; o != nil && o.metrics != nil {
		var attempt message.HandlerMiddleware
		process, attempt = o.metrics.Handler(name, eventName)
		inner = attempt(inner)
	}
	if o := b.obs; o != nil && o.tracing != nil {
		inner = o.tracing.Attempt(inner)
	}
	chain := st.delivery(build(inner))
	if process != nil {
		chain = process(chain)
	}
	if o := b.obs; o != nil && o.tracing != nil {
		chain = o.tracing.Process(chain)
	}
	return chain
}

// publishObserved is the end of publish with telemetry: the producer span
// around the transport's publish, its context in the event's metadata.
func (b *Bus) publishObserved(ctx context.Context, name string, meta handlers.Metadata, v any, payload []byte, pc *pubConfig) error {
	var span trace.Span
	if t := b.obs.tracing; t != nil {
		ctx, span = t.StartPublish(ctx, meta.Event, 1)
		pc = b.traceMetadata(ctx, pc)
	}
	var err error
	if b.local != nil {
		err = b.sendLocal(ctx, name, b.localEvent(meta, v, payload, pc))
	} else {
		err = b.publisher.Publish(name, b.message(ctx, meta, payload, pc))
	}
	b.published(ctx, span, name, 1, err)
	return err
}

// observeBatch starts the telemetry of a batch of n events named name: it
// returns the ctx and options to publish them with (the batch's span is
// active and its context is in their metadata), and the func that ends it.
func (b *Bus) observeBatch(ctx context.Context, name string, n int, pc *pubConfig) (context.Context, *pubConfig, func(error)) {
	var span trace.Span
	if t := b.obs.tracing; t != nil {
		ctx, span = t.StartPublish(ctx, transport.Event{Name: name}, n)
		pc = b.traceMetadata(ctx, pc)
	}
	return ctx, pc, func(err error) { b.published(ctx, span, name, n, err) }
}

// published ends a publish span (if any) and counts the events.
func (b *Bus) published(ctx context.Context, span trace.Span, name string, n int, err error) {
	if span != nil {
		b.obs.tracing.EndPublish(span, err)
	}
	if m := b.obs.metrics; m != nil {
		m.Published(ctx, name, n, err)
	}
}

// traceMetadata returns a copy of pc whose metadata carries the trace
// context of ctx.
func (b *Bus) traceMetadata(ctx context.Context, pc *pubConfig) *pubConfig {
	cp := &pubConfig{}
	if pc != nil {
		*cp = *pc
	}
	md := make(message.Metadata, len(cp.metadata)+2)
	maps.Copy(md, cp.metadata)
	b.obs.tracing.Inject(ctx, md)
	cp.metadata = md
	return cp
}

// startReplay starts the span of replaying rec and writes its context into
// md; the func returned ends it. Without tracing it does nothing.
func (b *Bus) startReplay(ctx context.Context, rec transport.PoisonRecord, md message.Metadata) (context.Context, func(error)) {
	if b.obs == nil || b.obs.tracing == nil {
		return ctx, func(error) {}
	}
	t := b.obs.tracing
	ctx, span := t.StartReplay(ctx, rec)
	t.Inject(ctx, md)
	return ctx, func(err error) { t.EndPublish(span, err) }
}
