package middleware_test

import (
	"context"
	"errors"
	"runtime"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/middleware"
	"github.com/heraldbus/herald/transport"
)

// sums returns, for every int64 sum of rm, the total of its points by
// instrument name and herald.outcome (or error.type, or "").
func sums(t *testing.T, r *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			d, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			for _, p := range d.DataPoints {
				key := m.Name
				if v, ok := p.Attributes.Value(middleware.AttrOutcome); ok {
					key += "/" + v.AsString()
				}
				if v, ok := p.Attributes.Value(middleware.AttrErrorType); ok {
					key += "/" + v.AsString()
				}
				out[key] += p.Value
			}
		}
	}
	return out
}

// Each outcome of a delivery is counted as such; in flight returns to 0,
// also when the handler calls runtime.Goexit.
func TestMetricsCountOutcomes(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	m, err := middleware.NewMetrics(mp, "test")
	if err != nil {
		t.Fatal(err)
	}
	process, attempt := m.Handler("h", "t.Event")
	var inFlight int64
	run := func(fail error, st *store) error {
		h := process(middleware.Poison(st, nil)(middleware.Retry(fast, nil)(attempt(func(*message.Message) ([]*message.Message, error) {
			inFlight = sums(t, reader)["herald.handler.in_flight"]
			return nil, fail
		}))))
		_, err := h(delivery(context.Background()))
		return err
	}
	_ = run(nil, newStore())
	if inFlight != 1 {
		t.Errorf("in flight during the handler = %d, want 1", inFlight)
	}
	_ = run(handlers.Permanent(errors.New("bad")), newStore())
	_ = run(errors.New("always"), newStore()) // 4 attempts, 3 retries, poisoned
	_ = run(middleware.Defer(nil), newStore())
	_ = run(handlers.Permanent(errors.New("bad")), &store{fail: errors.New("disk full")})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = process(func(*message.Message) ([]*message.Message, error) { runtime.Goexit(); return nil, nil })(delivery(context.Background()))
	}()
	<-done
	m.Published(context.Background(), "t.Event", 3, nil)
	m.Published(context.Background(), "t.Event", 1, transport.ErrTooLarge)

	got := sums(t, reader)
	for key, want := range map[string]int64{
		"messaging.client.consumed.messages/handled":         1,
		"messaging.client.consumed.messages/poisoned":        3, // permanent, retries out, Goexit
		"messaging.client.consumed.messages/delayed":         1,
		"messaging.client.consumed.messages/nacked":          1,
		"herald.handler.attempts":                            1 + 1 + 4 + 1 + 1,
		"herald.handler.retries":                             3,
		"herald.handler.poisoned":                            3,
		"herald.handler.in_flight":                           0,
		"messaging.client.sent.messages":                     3,
		"messaging.client.sent.messages/*errors.errorString": 1,
	} {
		if got[key] != want {
			t.Errorf("%s = %d, want %d (all: %v)", key, got[key], want, got)
		}
	}
	if _, err := middleware.NewMetrics(nil, ""); !errors.Is(err, transport.ErrInvalidOption) {
		t.Errorf("NewMetrics(nil) = %v", err)
	}
}
