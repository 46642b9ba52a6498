package middleware

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/transport"
)

// MeterName is the instrumentation scope of Herald's metrics.
const MeterName = "github.com/heraldbus/herald"

// ProcessDurationBuckets are the bucket boundaries, in seconds, of the
// messaging.process.duration histogram: those OpenTelemetry's messaging
// conventions advise.
var ProcessDurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// Metrics records OpenTelemetry metrics of publishes and deliveries. Build
// one with [NewMetrics]; bus.WithMetrics does, and places its middleware in
// every handler's chain. It is safe for concurrent use. The instruments, each
// with messaging.system, messaging.destination.name (the event) and, for a
// handler's, messaging.consumer.group.name (the handler):
//
//	messaging.client.sent.messages      counter    events published (error.type when the publish failed)
//	messaging.client.consumed.messages  counter    deliveries that ended, by herald.outcome
//	messaging.process.duration          histogram  seconds from the start to the end of a delivery, retries included, by herald.outcome
//	herald.handler.attempts             counter    calls of the handler
//	herald.handler.retries              counter    calls after the first within a delivery
//	herald.handler.poisoned             counter    deliveries that went to the poison queue
//	herald.handler.in_flight            up-down    deliveries being processed now
//	herald.handler.backlog              gauge      events waiting for the handler ([Metrics.ObserveBacklog])
type Metrics struct {
	meter    metric.Meter
	system   attribute.KeyValue
	sent     metric.Int64Counter
	consumed metric.Int64Counter
	duration metric.Float64Histogram
	attempts metric.Int64Counter
	retries  metric.Int64Counter
	poisoned metric.Int64Counter
	inFlight metric.Int64UpDownCounter
	backlog  metric.Int64ObservableGauge
}

// NewMetrics returns metrics recorded with a meter of mp. system is the
// messaging.system attribute (the transport's name); "" means "herald". A
// nil mp is an error wrapping transport.ErrInvalidOption; so is a provider
// that refuses an instrument.
func NewMetrics(mp metric.MeterProvider, system string) (*Metrics, error) {
	if mp == nil {
		return nil, fmt.Errorf("%w: nil MeterProvider", transport.ErrInvalidOption)
	}
	if system == "" {
		system = "herald"
	}
	m := &Metrics{meter: mp.Meter(MeterName), system: AttrSystem.String(system)}
	var errs [8]error
	m.sent, errs[0] = m.meter.Int64Counter("messaging.client.sent.messages",
		metric.WithUnit("{message}"), metric.WithDescription("Events published."))
	m.consumed, errs[1] = m.meter.Int64Counter("messaging.client.consumed.messages",
		metric.WithUnit("{message}"), metric.WithDescription("Deliveries to a handler that ended, by outcome."))
	m.duration, errs[2] = m.meter.Float64Histogram("messaging.process.duration",
		metric.WithUnit("s"), metric.WithDescription("Duration of a delivery to a handler, retries included."),
		metric.WithExplicitBucketBoundaries(ProcessDurationBuckets...))
	m.attempts, errs[3] = m.meter.Int64Counter("herald.handler.attempts",
		metric.WithUnit("{attempt}"), metric.WithDescription("Calls of a handler."))
	m.retries, errs[4] = m.meter.Int64Counter("herald.handler.retries",
		metric.WithUnit("{attempt}"), metric.WithDescription("Calls of a handler after the first of a delivery."))
	m.poisoned, errs[5] = m.meter.Int64Counter("herald.handler.poisoned",
		metric.WithUnit("{message}"), metric.WithDescription("Deliveries that went to the poison queue."))
	m.inFlight, errs[6] = m.meter.Int64UpDownCounter("herald.handler.in_flight",
		metric.WithUnit("{message}"), metric.WithDescription("Deliveries a handler is processing now."))
	m.backlog, errs[7] = m.meter.Int64ObservableGauge("herald.handler.backlog",
		metric.WithUnit("{message}"), metric.WithDescription("Events waiting for a handler, as its transport counts them."))
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("%w: metrics: %w", transport.ErrInvalidOption, err)
		}
	}
	return m, nil
}

// Published records n events of the event name published with the result
// err.
func (m *Metrics) Published(ctx context.Context, name string, n int, err error) {
	if err != nil {
		m.sent.Add(ctx, int64(n), metric.WithAttributes(m.system, AttrDestination.String(name),
			AttrErrorType.String(ErrorType(err))))
		return
	}
	m.sent.Add(ctx, int64(n), metric.WithAttributes(m.system, AttrDestination.String(name)))
}

// handlerAttrs are a handler's attribute sets, built once.
type handlerAttrs struct {
	base      metric.MeasurementOption
	byOutcome map[string]metric.MeasurementOption
}

func (m *Metrics) handlerAttrs(handler, eventName string) *handlerAttrs {
	base := []attribute.KeyValue{m.system, AttrDestination.String(eventName), AttrConsumerGroup.String(handler)}
	a := &handlerAttrs{base: metric.WithAttributeSet(attribute.NewSet(base...)), byOutcome: map[string]metric.MeasurementOption{}}
	for _, oc := range []string{OutcomeHandled, OutcomePoisoned, OutcomeDelayed, OutcomeNacked} {
		a.byOutcome[oc] = metric.WithAttributeSet(attribute.NewSet(append(base[:3:3], AttrOutcome.String(oc))...))
	}
	return a
}

// Handler returns the middleware that records the deliveries (process) and
// the attempts (attempt) of handler, which consumes the event eventName.
// Place process outside Poison, so that it sees poisoned deliveries, and
// attempt inside Retry; bus.WithMetrics puts process outermost and attempt
// around the handler.
func (m *Metrics) Handler(handler, eventName string) (process, attempt message.HandlerMiddleware) {
	a := m.handlerAttrs(handler, eventName)
	process = func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) (out []*message.Message, err error) {
			ctx := msg.Context()
			first := event.Attempt(msg)
			m.inFlight.Add(ctx, 1, a.base)
			start := time.Now()
			normal := false
			defer func() {
				oc := outcome(err, normal, event.Poisoned(msg))
				m.inFlight.Add(ctx, -1, a.base)
				m.consumed.Add(ctx, 1, a.byOutcome[oc])
				m.duration.Record(ctx, time.Since(start).Seconds(), a.byOutcome[oc])
				if oc == OutcomePoisoned {
					m.poisoned.Add(ctx, 1, a.base)
				}
				if last := event.Attempt(msg); last > first {
					m.retries.Add(ctx, int64(last-first), a.base)
				}
			}()
			out, err = h(msg)
			normal = true
			return out, err
		}
	}
	attempt = func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			m.attempts.Add(msg.Context(), 1, a.base)
			return h(msg)
		}
	}
	return process, attempt
}

// BacklogFunc reports the backlog of every handler to report, for
// [Metrics.ObserveBacklog]. It honours ctx.
type BacklogFunc func(ctx context.Context, report func(handler, eventName string, backlog int64)) error

// ObserveBacklog makes f the source of the herald.handler.backlog gauge: the
// meter provider calls it at each collection. Unregister the result when
// the handlers are gone (the bus does at Close).
func (m *Metrics) ObserveBacklog(f BacklogFunc) (metric.Registration, error) {
	return m.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		return f(ctx, func(handler, eventName string, backlog int64) {
			o.ObserveInt64(m.backlog, backlog, metric.WithAttributes(m.system,
				AttrDestination.String(eventName), AttrConsumerGroup.String(handler)))
		})
	}, m.backlog)
}
