package nats_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/testkit"
	"github.com/heraldbus/herald/middleware"
)

// Observability over NATS: one trace across two buses, and Stats.

// spanSet finds recorded spans by name and attributes.
type spanSet []sdktrace.ReadOnlySpan

// one returns the single span named name with every attribute of want; it
// fails t if there is not exactly one.
func (ss spanSet) one(t *testing.T, name string, want ...attribute.KeyValue) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range ss {
		if s.Name() == name && hasAttrs(s.Attributes(), want) {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans %q with %v, want 1; recorded: %s", len(found), name, want, ss)
	}
	return found[0]
}

func (ss spanSet) count(name string, want ...attribute.KeyValue) int {
	n := 0
	for _, s := range ss {
		if s.Name() == name && hasAttrs(s.Attributes(), want) {
			n++
		}
	}
	return n
}

func (ss spanSet) String() string {
	var b strings.Builder
	for _, s := range ss {
		b.WriteString("\n  " + s.Name() + " " + s.SpanContext().SpanID().String())
		for _, a := range s.Attributes() {
			b.WriteString(" " + string(a.Key) + "=" + a.Value.String())
		}
	}
	return b.String()
}

func hasAttrs(have, want []attribute.KeyValue) bool {
	for _, w := range want {
		ok := false
		for _, h := range have {
			if h == w {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func childOf(t *testing.T, child, parent sdktrace.ReadOnlySpan) {
	t.Helper()
	if child.Parent().SpanID() != parent.SpanContext().SpanID() || child.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("span %q (parent %s, trace %s) is not a child of %q (span %s, trace %s)",
			child.Name(), child.Parent().SpanID(), child.SpanContext().TraceID(),
			parent.Name(), parent.SpanContext().SpanID(), parent.SpanContext().TraceID())
	}
}

// An HTTP-style root span, a publish on one bus, a handler on a second bus
// (another connection to the server) that fails once and then publishes, a
// handler that takes that event: one trace, each span the child of the one
// before, with the retry and a poisoned delivery on the spans; the poisoned
// event's replay is a new trace linked to the first.
func TestTraceCrossesBusesOverNATS(t *testing.T) {
	eachBroker(t, func(t *testing.T, b broker) {
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		opts := func() []bus.Option {
			return []bus.Option{bus.WithTransport(b.transport(t)), bus.WithTracing(tp),
				bus.WithPropagator(propagation.TraceContext{}),
				bus.WithDefaultRetry(middleware.RetryPolicy{InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond})}
		}
		orders := bustest.New(t, opts()...)
		billing := bustest.New(t, opts()...)

		if _, err := bus.Subscribe(billing, "billing.charge", func(ctx context.Context, e OrderPlaced) error {
			if m, _ := handlers.FromContext(ctx); m.Attempt == 1 {
				return errors.New("card network busy")
			}
			return bus.Publish(ctx, billing, PaymentTaken{OrderID: e.ID})
		}); err != nil {
			t.Fatal(err)
		}
		var auditFixed atomic.Bool
		if _, err := bus.Subscribe(billing, "billing.audit", func(ctx context.Context, e OrderPlaced) error {
			if !auditFixed.Load() {
				return bus.Permanent(errors.New("audit rule 7 rejects " + e.ID))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		shipped := bustest.Record[PaymentTaken](t, orders, "shipping.ship")

		ctx := testCtx(t)
		rctx, root := tp.Tracer("test").Start(ctx, "GET /checkout", trace.WithSpanKind(trace.SpanKindServer))
		if err := bus.Publish(rctx, orders, OrderPlaced{ID: "o-1"}); err != nil {
			t.Fatal(err)
		}
		root.End()
		shipped.Wait(t, 1, wait)
		poison := waitPoison(t, billing, "billing.audit", 1)
		id := poison[0].Event.ID

		group := func(h string) attribute.KeyValue { return middleware.AttrConsumerGroup.String(h) }
		outcome := func(o string) attribute.KeyValue { return middleware.AttrOutcome.String(o) }
		processOrder := "process herald_test.OrderPlaced"
		bustest.Eventually(t, wait, func() bool {
			ss := spanSet(rec.Ended())
			return ss.count("process herald_test.PaymentTaken") == 1 && ss.count(processOrder) == 2 &&
				ss.count("publish herald_test.PaymentTaken") == 1
		}, "the spans of the first trace")
		ss := spanSet(rec.Ended())

		rootSpan := ss.one(t, "GET /checkout")
		pubOrder := ss.one(t, "publish herald_test.OrderPlaced",
			middleware.AttrSystem.String("nats"),
			middleware.AttrDestination.String("herald_test.OrderPlaced"),
			middleware.AttrMessageID.String(id),
			middleware.AttrConversationID.String(id))
		childOf(t, pubOrder, rootSpan)
		if pubOrder.SpanKind() != trace.SpanKindProducer {
			t.Errorf("publish span kind %v", pubOrder.SpanKind())
		}

		charge := ss.one(t, processOrder, group("billing.charge"), outcome("handled"),
			middleware.AttrSystem.String("nats"), middleware.AttrMessageID.String(id),
			middleware.AttrConversationID.String(id), middleware.AttrAttempts.Int(2))
		childOf(t, charge, pubOrder)
		if charge.SpanKind() != trace.SpanKindConsumer {
			t.Errorf("process span kind %v", charge.SpanKind())
		}
		if got := testkit.AttemptEvents(charge); got != "1:retried:*errors.errorString 2:handled" {
			t.Errorf("billing.charge attempts %q", got)
		}

		audit := ss.one(t, processOrder, group("billing.audit"), outcome("poisoned"))
		childOf(t, audit, pubOrder)
		if got := testkit.AttemptEvents(audit); got != "1:poisoned:*errors.errorString" {
			t.Errorf("billing.audit attempts %q", got)
		}
		if st := audit.Status(); st.Code != codes.Error || !strings.Contains(st.Description, "audit rule 7") {
			t.Errorf("poisoned span status %+v", st)
		}

		pubPay := ss.one(t, "publish herald_test.PaymentTaken", middleware.AttrConversationID.String(id))
		childOf(t, pubPay, charge)
		ship := ss.one(t, "process herald_test.PaymentTaken", group("shipping.ship"), outcome("handled"))
		childOf(t, ship, pubPay)

		// The replay: a trace of its own, linked to the first publish.
		auditFixed.Store(true)
		if err := billing.Poison().Replay(ctx, poison[0].ID); err != nil {
			t.Fatal(err)
		}
		bustest.Eventually(t, wait, func() bool {
			return spanSet(rec.Ended()).count(processOrder, group("billing.audit"), outcome("handled")) == 1
		}, "the replayed delivery's span")
		ss = spanSet(rec.Ended())
		replay := ss.one(t, "replay herald_test.OrderPlaced", group("billing.audit"))
		if links := replay.Links(); len(links) != 1 || links[0].SpanContext.SpanID() != pubOrder.SpanContext().SpanID() ||
			links[0].SpanContext.TraceID() != pubOrder.SpanContext().TraceID() {
			t.Errorf("replay span links %+v, want the first publish %s", links, pubOrder.SpanContext().SpanID())
		}
		if replay.SpanContext().TraceID() == pubOrder.SpanContext().TraceID() {
			t.Error("the replay continues the first trace; it should start its own and link to it")
		}
		childOf(t, ss.one(t, processOrder, group("billing.audit"), outcome("handled")), replay)
	})
}

// Stats over NATS: the backlog grows while the handler is blocked (pending
// plus ack-pending, so the event in flight counts) and falls to 0 once it
// goes on; the counters, last error and latency follow.
func TestStatsOverNATS(t *testing.T) {
	eachBroker(t, func(t *testing.T, b broker) {
		bb := newBus(t, b)
		gate := make(chan struct{})
		started := make(chan struct{}, 16)
		if _, err := bus.Subscribe(bb, "billing.slow", func(ctx context.Context, e OrderPlaced) error {
			started <- struct{}{}
			select {
			case <-gate:
			case <-ctx.Done():
				return ctx.Err()
			}
			if m, _ := handlers.FromContext(ctx); e.Seq == 0 && m.Attempt == 1 {
				return errors.New("ledger locked")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		ctx := testCtx(t)
		stats := func() bus.HandlerStats {
			t.Helper()
			all, err := bb.Stats(ctx)
			if err != nil || len(all) != 1 {
				t.Fatalf("Stats: %v, %v", all, err)
			}
			return all[0]
		}
		publishOrders(t, bb, 0, 1)
		select {
		case <-started:
		case <-ctx.Done():
			t.Fatal("the handler did not start")
		}
		publishOrders(t, bb, 1, 5)
		bustest.Eventually(t, wait, func() bool { s := stats(); return s.Backlog == 6 && s.InFlight == 1 },
			"backlog 6 (5 waiting, 1 in flight) while the handler is blocked")
		close(gate)
		bustest.Eventually(t, wait, func() bool { s := stats(); return s.Handled == 6 && s.Backlog == 0 },
			"every event handled and the backlog at 0")
		s := stats()
		if s.Handler != "billing.slow" || s.Event != "herald_test.OrderPlaced" || s.Transport != "nats" {
			t.Errorf("names %q %q %q", s.Handler, s.Event, s.Transport)
		}
		if s.InFlight != 0 || s.Poisoned != 0 || s.FailedAttempts != 1 || s.LastError != "ledger locked" || s.LastErrorAt.IsZero() {
			t.Errorf("stats %+v", s)
		}
		l := s.Latency // 6 deliveries: the first is timed, then one in 8
		if l.Samples != 1 || l.P50 <= 0 || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.Max {
			t.Errorf("latency %+v", l)
		}
	})
}
