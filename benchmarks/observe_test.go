package benchmarks

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/heraldbus/herald/bus"
)

// The cost of observability: the same run with no provider (the default) and
// with both (bus.WithTracing and bus.WithMetrics), in memory and over NATS.

// discardSpans is a span exporter that drops what it is given: the cost
// measured is the SDK's and Herald's, not an exporter's I/O.
type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpans) Shutdown(context.Context) error                             { return nil }

// observeModes are the providers of each run: none, or an SDK tracer provider
// sampling every span into a batch processor (discarding exporter) and an SDK
// meter provider with a manual reader (every instrument aggregates; nothing
// is collected during the run). Both are shut down when b ends.
var observeModes = []busMode{
	{"none", func(*testing.B) []bus.Option { return nil }},
	{"both", func(b *testing.B) []bus.Option {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardSpans{}), sdktrace.WithSampler(sdktrace.AlwaysSample()))
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		b.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = tp.Shutdown(ctx)
			_ = mp.Shutdown(ctx)
		})
		return []bus.Option{bus.WithTracing(tp), bus.WithMetrics(mp)}
	}},
}

// BenchmarkObserveMemory publishes b.N events one after the other to one
// handler on a memory bus (default chain) and stops the clock when it has
// handled them all, without and with both providers. ns/op and allocs/op are
// per event; the difference between the two runs is what observability costs.
func BenchmarkObserveMemory(b *testing.B) {
	benchModesMemory(b, "providers", observeModes, func(b *testing.B, hb *bus.Bus, c *counter) {
		ctx := context.Background()
		e := newEvent(1)
		runSequential(b, c, 1, func(int) {
			if err := bus.Publish(ctx, hb, e); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// BenchmarkObserveNATS is BenchmarkNATSEndToEnd's Herald run (batches of
// e2eBatch, one handler) without and with both providers.
func BenchmarkObserveNATS(b *testing.B) {
	benchModesNATS(b, "providers", observeModes, func(b *testing.B, a *admin, rig *natsRig, c *counter) {
		runEndToEnd(b, c, 1, rig.publishBatch)
		a.waitAcked(b, rig.stream)
	})
}
