package bus_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/heraldbus/herald/adapters/memory"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/middleware"
)

const obsWait = 10 * time.Second

var fastRetry = bus.WithDefaultRetry(middleware.RetryPolicy{InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond})

func TestObserveOptionsRefuseNil(t *testing.T) {
	for name, opt := range map[string]bus.Option{
		"WithTracing(nil)":    bus.WithTracing(nil),
		"WithPropagator(nil)": bus.WithPropagator(nil),
		"WithMetrics(nil)":    bus.WithMetrics(nil),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := bus.New(opt); !errors.Is(err, bus.ErrInvalidOption) {
				t.Errorf("New(%s) = %v, want ErrInvalidOption", name, err)
			}
		})
	}
}

// metrics reads a manual reader's metrics.
type metrics struct {
	t  *testing.T
	rm metricdata.ResourceMetrics
}

func collect(t *testing.T, r *sdkmetric.ManualReader) metrics {
	t.Helper()
	m := metrics{t: t}
	if err := r.Collect(context.Background(), &m.rm); err != nil {
		t.Fatal(err)
	}
	return m
}

func (m metrics) find(name string) metricdata.Aggregation {
	for _, sm := range m.rm.ScopeMetrics {
		for _, x := range sm.Metrics {
			if x.Name == name {
				return x.Data
			}
		}
	}
	return nil
}

// int64 sums the points of the counter or gauge name whose attributes include
// want.
func (m metrics) int64(name string, want ...attribute.KeyValue) int64 {
	m.t.Helper()
	var pts []metricdata.DataPoint[int64]
	switch d := m.find(name).(type) {
	case metricdata.Sum[int64]:
		pts = d.DataPoints
	case metricdata.Gauge[int64]:
		pts = d.DataPoints
	case nil:
		m.t.Fatalf("no metric %q", name)
	default:
		m.t.Fatalf("metric %q is a %T", name, d)
	}
	var n int64
	for _, p := range pts {
		if includes(p.Attributes, want) {
			n += p.Value
		}
	}
	return n
}

func includes(set attribute.Set, want []attribute.KeyValue) bool {
	for _, w := range want {
		if v, ok := set.Value(w.Key); !ok || v != w.Value {
			return false
		}
	}
	return true
}

// A scripted run: N events published, K retried once, P poisoned; the handler
// is blocked at first, so the backlog is N-1 with one in flight, and falls to
// 0. Every instrument has the value the script implies.
func TestMetricsAfterScriptedRun(t *testing.T) {
	const n, k, p = 10, 3, 2
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	b := bustest.New(t, bus.WithMetrics(mp), fastRetry)

	gate := make(chan struct{})
	if _, err := bus.Subscribe(b, "billing.charge", func(ctx context.Context, e OrderPlaced) error {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		m, _ := handlers.FromContext(ctx)
		switch {
		case e.Cents == 1 && m.Attempt == 1:
			return errors.New("card network busy")
		case e.Cents == 2:
			return bus.Permanent(errors.New("card refused"))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), obsWait)
	defer cancel()
	for i := range n {
		cents := int64(0)
		switch {
		case i >= 1 && i <= k:
			cents = 1
		case i > k && i <= k+p:
			cents = 2
		}
		if err := bus.Publish(ctx, b, OrderPlaced{ID: "o", Cents: cents}); err != nil {
			t.Fatal(err)
		}
	}
	stats := func() bus.HandlerStats {
		s, err := b.Stats(ctx)
		if err != nil || len(s) != 1 {
			t.Fatalf("Stats: %v, %v", s, err)
		}
		return s[0]
	}
	bustest.Eventually(t, obsWait, func() bool { s := stats(); return s.InFlight == 1 && s.Backlog == n-1 },
		"one event in flight, the others queued")

	handler := middleware.AttrConsumerGroup.String("billing.charge")
	ev := middleware.AttrDestination.String("bus_test.OrderPlaced")
	sys := middleware.AttrSystem.String("memory")
	m := collect(t, reader)
	if got := m.int64("herald.handler.backlog", handler, ev, sys); got != n-1 {
		t.Errorf("backlog while blocked = %d, want %d", got, n-1)
	}
	if got := m.int64("herald.handler.in_flight", handler); got != 1 {
		t.Errorf("in flight while blocked = %d, want 1", got)
	}

	close(gate)
	bustest.Eventually(t, obsWait, func() bool { s := stats(); return s.Handled+s.Poisoned == n },
		"every delivery ended")
	m = collect(t, reader)
	outcome := func(o string) attribute.KeyValue { return middleware.AttrOutcome.String(o) }
	for _, c := range []struct {
		name string
		want int64
		attr []attribute.KeyValue
	}{
		{"messaging.client.sent.messages", n, []attribute.KeyValue{ev, sys}},
		{"messaging.client.consumed.messages", n - p, []attribute.KeyValue{handler, ev, outcome("handled")}},
		{"messaging.client.consumed.messages", p, []attribute.KeyValue{handler, outcome("poisoned")}},
		{"herald.handler.attempts", n + k, []attribute.KeyValue{handler, ev}},
		{"herald.handler.retries", k, []attribute.KeyValue{handler}},
		{"herald.handler.poisoned", p, []attribute.KeyValue{handler}},
		{"herald.handler.in_flight", 0, []attribute.KeyValue{handler}},
		{"herald.handler.backlog", 0, []attribute.KeyValue{handler}},
	} {
		if got := m.int64(c.name, c.attr...); got != c.want {
			t.Errorf("%s%v = %d, want %d", c.name, c.attr, got, c.want)
		}
	}
	h, ok := m.find("messaging.process.duration").(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("messaging.process.duration is a %T", m.find("messaging.process.duration"))
	}
	var count uint64
	for _, pt := range h.DataPoints {
		count += pt.Count
		if !slices.Equal(pt.Bounds, middleware.ProcessDurationBuckets) {
			t.Errorf("histogram bounds %v, want the conventions' %v", pt.Bounds, middleware.ProcessDurationBuckets)
		}
	}
	if count != n {
		t.Errorf("histogram counts %d deliveries, want %d", count, n)
	}
	if s := stats(); s.FailedAttempts != k+p || s.Poisoned != p || s.Handled != n-p || s.LastError != "card refused" {
		t.Errorf("stats %+v", s)
	}
}

// Stats in memory: the backlog (queued events, not the one in flight) grows
// while the handler is blocked and falls to 0 after.
func TestStatsInMemory(t *testing.T) {
	b := bustest.New(t)
	gate := make(chan struct{})
	started := make(chan struct{}, 16)
	if _, err := bus.Subscribe(b, "billing.slow", func(ctx context.Context, e OrderPlaced) error {
		started <- struct{}{}
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), obsWait)
	defer cancel()
	backlog := func() int64 {
		s, err := b.Stats(ctx)
		if err != nil || len(s) != 1 {
			t.Fatalf("Stats: %v, %v", s, err)
		}
		return s[0].Backlog
	}
	publish := func(k int) {
		for range k {
			if err := bus.Publish(ctx, b, OrderPlaced{ID: "o"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(1)
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the handler did not start")
	}
	for _, want := range []int64{0, 3, 5} {
		publish(int(want - backlog()))
		if got := backlog(); got != want {
			t.Errorf("backlog %d after publishing while blocked, want %d", got, want)
		}
	}
	close(gate)
	bustest.Eventually(t, obsWait, func() bool { return backlog() == 0 }, "backlog back to 0")
	bustest.Eventually(t, obsWait, func() bool { s, _ := b.Stats(ctx); return s[0].Handled == 6 }, "6 handled")
	s, _ := b.Stats(ctx) // 6 deliveries: the first is timed, then one in 8
	if s[0].Transport != "memory" || s[0].InFlight != 0 || s[0].Latency.Samples != 1 || s[0].FailedAttempts != 0 {
		t.Errorf("stats %+v", s[0])
	}
}

// A transport that cannot count its backlog gives -1, and the default name.
func TestStatsWithoutBacklogReporter(t *testing.T) {
	b := bustest.New(t, bus.WithTransport(remoteTransport{memory.New()}))
	bustest.Record[OrderPlaced](t, b, "h")
	s, err := b.Stats(context.Background())
	if err != nil || len(s) != 1 || s[0].Backlog != -1 || s[0].Transport != "herald" {
		t.Fatalf("Stats = %+v, %v", s, err)
	}
}

// In process: the root, the publish, the handler (which fails once and then
// publishes), the next handler: one trace; the log lines of the failed
// attempt carry its trace and span IDs.
func TestTraceInProcessAndLogLines(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	core, logs := observer.New(zap.InfoLevel)
	b := bustest.New(t, bus.WithTracing(tp), bus.WithPropagator(propagation.TraceContext{}), bus.WithLogger(zap.New(core)), fastRetry)
	if _, err := bus.Subscribe(b, "shipping.pack", func(ctx context.Context, e OrderPlaced) error {
		if m, _ := handlers.FromContext(ctx); m.Attempt == 1 {
			return errors.New("printer jammed")
		}
		return bus.Publish(ctx, b, OrderShipped{ID: e.ID}, bus.WithMetadata("X-Tenant", "acme"))
	}); err != nil {
		t.Fatal(err)
	}
	shipped := bustest.Record[OrderShipped](t, b, "email.notify")
	ctx, root := tp.Tracer("test").Start(context.Background(), "POST /orders", trace.WithSpanKind(trace.SpanKindServer))
	if err := bus.Publish(ctx, b, OrderPlaced{ID: "o-9"}); err != nil {
		t.Fatal(err)
	}
	root.End()
	shipped.Wait(t, 1, obsWait)
	bustest.Eventually(t, obsWait, func() bool { return len(rec.Ended()) == 5 }, "five spans")

	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		byName[s.Name()] = s
	}
	chain := []string{"POST /orders", "publish bus_test.OrderPlaced", "process bus_test.OrderPlaced",
		"publish bus_test.OrderShipped", "process bus_test.OrderShipped"}
	for i := 1; i < len(chain); i++ {
		c, p := byName[chain[i]], byName[chain[i-1]]
		if c == nil || p == nil {
			t.Fatalf("spans %v, want %v", byName, chain)
		}
		if c.Parent().SpanID() != p.SpanContext().SpanID() || c.SpanContext().TraceID() != root.SpanContext().TraceID() {
			t.Errorf("%q is not a child of %q in the root's trace", chain[i], chain[i-1])
		}
	}
	process := byName["process bus_test.OrderPlaced"]
	if !includes(attribute.NewSet(process.Attributes()...), []attribute.KeyValue{
		middleware.AttrSystem.String("memory"), middleware.AttrOutcome.String("handled"), middleware.AttrAttempts.Int(2)}) {
		t.Errorf("process span attributes %v", process.Attributes())
	}
	failed := logs.FilterMessage("handler attempt failed").All()
	if len(failed) != 1 {
		t.Fatalf("%d 'handler attempt failed' lines, want 1", len(failed))
	}
	fields := failed[0].ContextMap()
	if fields["trace_id"] != root.SpanContext().TraceID().String() || fields["span_id"] != process.SpanContext().SpanID().String() {
		t.Errorf("log line fields %v, want trace %s span %s", fields, root.SpanContext().TraceID(), process.SpanContext().SpanID())
	}
	if retrying := logs.FilterMessage("retrying").All(); len(retrying) != 1 || !strings.EqualFold(retrying[0].ContextMap()["trace_id"].(string), root.SpanContext().TraceID().String()) {
		t.Errorf("'retrying' lines %v lack the trace ID", retrying)
	}
}
