package herald_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	wmmiddleware "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/heraldbus/herald/adapters/memory"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/middleware"
)

func TestTimeoutPerAttemptIsRetryable(t *testing.T) {
	b := bustest.New(t, fast)
	var calls atomic.Int32
	if _, err := bus.Subscribe(b, "slowpoke", func(ctx context.Context, e OrderPlaced) error {
		calls.Add(1)
		<-ctx.Done() // every attempt overruns its own deadline
		return ctx.Err()
	}, bus.WithAttemptTimeout(20*time.Millisecond), bus.WithRetry(middleware.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Millisecond})); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, 1)
	rec := awaitPoison(t, b, "slowpoke", 1)[0]
	if calls.Load() != 3 || rec.Attempts != 3 || !strings.Contains(rec.Error, "timed out") {
		t.Errorf("calls %d, record %+v", calls.Load(), rec)
	}
}

func TestTimeoutLetsFastHandlersThrough(t *testing.T) {
	b := bustest.New(t)
	r := bustest.Record[OrderPlaced](t, b, "quick", bus.WithAttemptTimeout(time.Second))
	publishN(t, b, 3)
	r.Wait(t, 3, wait)
}

func TestRateLimitSpacesAttempts(t *testing.T) {
	b := bustest.New(t)
	var mu sync.Mutex
	var at []time.Time
	r := &bustest.Recorder[OrderPlaced]{Fail: func(context.Context, OrderPlaced) error {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		return nil
	}}
	if _, err := bus.Subscribe(b, "limited", r.Handle, bus.WithRateLimit(50, 1), bus.WithConcurrency(4)); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, 6)
	r.Wait(t, 6, wait)
	// 50/s with burst 1: 6 events need at least 5 gaps of 20ms.
	if d := at[len(at)-1].Sub(at[0]); d < 90*time.Millisecond {
		t.Errorf("6 events at 50/s took %v, want ≥ 100ms", d)
	}
}

func TestCircuitBreakerOpensDefersAndRecovers(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	tr := memory.New(memory.WithRedeliveryDelay(5 * time.Millisecond))
	b := bustest.New(t, bus.WithTransport(tr), bus.WithLogger(zap.New(core)))
	var healthy atomic.Bool
	var calls atomic.Int32
	r := &bustest.Recorder[OrderPlaced]{Fail: func(context.Context, OrderPlaced) error {
		calls.Add(1)
		if !healthy.Load() {
			return errors.New("dependency down")
		}
		return nil
	}}
	if _, err := bus.Subscribe(b, "guarded", r.Handle,
		bus.WithRetry(middleware.RetryPolicy{MaxAttempts: 1}),
		bus.WithCircuitBreaker(middleware.BreakerConfig{ConsecutiveFailures: 3, OpenFor: 100 * time.Millisecond})); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, 10)
	// 3 failures trip the breaker; those 3 are poisoned (retries exhausted).
	awaitPoison(t, b, "guarded", 3)
	bustest.Eventually(t, wait, func() bool { return logs.FilterMessage("circuit breaker state changed").Len() >= 1 }, "breaker opened")
	callsWhenOpen := calls.Load()
	healthy.Store(true)
	// While open, the other 7 are deferred (redelivered), not poisoned; after
	// OpenFor a probe succeeds, the breaker closes, and all 7 are handled.
	r.Wait(t, 7, wait)
	if recs, _ := b.Poison().List(ctxT(t), "guarded"); len(recs) != 3 {
		t.Errorf("%d poison records, want 3: an open breaker must not poison", len(recs))
	}
	if callsWhenOpen != 3 {
		t.Errorf("handler called %d times before the breaker opened, want 3", callsWhenOpen)
	}
	states := logs.FilterMessage("circuit breaker state changed").All()
	if last := states[len(states)-1].ContextMap()["to"]; last != "closed" {
		t.Errorf("last breaker state %v, want closed", last)
	}
}

func TestDedupSkipsCompletedEventsButNotReplays(t *testing.T) {
	b := bustest.New(t, fast)
	store := middleware.NewMemoryDedup(0)
	var calls atomic.Int32
	var failOnce atomic.Bool
	failOnce.Store(true)
	if _, err := bus.Subscribe(b, "once", func(ctx context.Context, e OrderPlaced) error {
		calls.Add(1)
		if e.ID == "poison-me" && failOnce.Swap(false) {
			return bus.Permanent(errors.New("first time fails"))
		}
		return nil
	}, bus.WithDedup(store, time.Minute)); err != nil {
		t.Fatal(err)
	}
	// The same event ID twice: the second is a duplicate and skipped.
	for range 2 {
		if err := bus.Publish(ctxT(t), b, OrderPlaced{ID: "a"}, bus.WithMessageID("evt-a")); err != nil {
			t.Fatal(err)
		}
	}
	if err := bus.Publish(ctxT(t), b, OrderPlaced{ID: "poison-me"}, bus.WithMessageID("evt-p")); err != nil {
		t.Fatal(err)
	}
	rec := awaitPoison(t, b, "once", 1)[0]
	if err := b.Poison().Replay(ctxT(t), rec.ID); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, wait, func() bool { return calls.Load() == 3 }, "calls: a, poison-me, its replay (got %d)", calls.Load())
	if err := bus.Publish(ctxT(t), b, OrderPlaced{ID: "poison-me"}, bus.WithMessageID("evt-p")); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, 1) // a marker: once it is handled, the duplicate before it was skipped
	bustest.Eventually(t, wait, func() bool { return calls.Load() >= 4 }, "marker handled")
	if calls.Load() != 4 || store.Len() != 3 {
		t.Errorf("calls %d (want 4), keys %d (want 3)", calls.Load(), store.Len())
	}
}

func TestMemoryDedupBoundAndTTL(t *testing.T) {
	s := middleware.NewMemoryDedup(2)
	ctx := context.Background()
	_ = s.Finish(ctx, "a", time.Hour)
	_ = s.Finish(ctx, "b", time.Millisecond)
	_ = s.Finish(ctx, "c", time.Hour)
	if s.Len() != 2 {
		t.Errorf("len %d beyond the bound 2", s.Len())
	}
	if done, tok, _ := s.Begin(ctx, "a", time.Hour); done || tok == "" {
		t.Errorf("oldest key kept beyond the bound")
	}
	ttl := middleware.NewMemoryDedup(10)
	_ = ttl.Finish(ctx, "short", time.Millisecond)
	_ = ttl.Finish(ctx, "long", time.Hour)
	bustest.Eventually(t, wait, func() bool { d, _, _ := ttl.Begin(ctx, "short", time.Hour); return !d }, "TTL expiry")
	if done, _, _ := ttl.Begin(ctx, "long", time.Hour); !done {
		t.Error("live key lost")
	}
	if _, tok, _ := ttl.Begin(ctx, "short", time.Hour); tok != "" {
		t.Error("a live claim was claimed twice")
	}
	_ = ttl.Abandon(ctx, "short", "not-the-token")
	if _, tok, _ := ttl.Begin(ctx, "short", time.Hour); tok != "" {
		t.Error("Abandon with another token dropped the claim")
	}
	// The claim from the Eventually loop above holds a token we no longer
	// know: take a fresh key to check Abandon with the right token.
	_, tok, _ := ttl.Begin(ctx, "fresh", time.Hour)
	_ = ttl.Abandon(ctx, "fresh", tok)
	if _, again, _ := ttl.Begin(ctx, "fresh", time.Hour); again == "" {
		t.Error("abandoned claim not claimable")
	}
}

func TestLoggingLinesPerOutcome(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	b := bustest.New(t, bus.WithLogger(zap.New(core)), fast)
	var n atomic.Int32
	r := &bustest.Recorder[OrderPlaced]{Fail: func(context.Context, OrderPlaced) error {
		switch n.Add(1) {
		case 1:
			return errors.New("first fails")
		case 2:
			time.Sleep(30 * time.Millisecond) // slower than the threshold below
		}
		return nil
	}}
	if _, err := bus.Subscribe(b, "logged", r.Handle, bus.WithSlowThreshold(20*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(ctxT(t), b, OrderPlaced{ID: "secret-payload-value"}); err != nil {
		t.Fatal(err)
	}
	r.Wait(t, 1, wait)
	publishN(t, b, 1)
	r.Wait(t, 2, wait)
	bustest.Eventually(t, wait, func() bool { return logs.FilterMessage("handled").Len() == 1 }, "debug line per success")
	failed := logs.FilterMessage("handler attempt failed").All()
	slow := logs.FilterMessage("slow handler").All()
	if len(failed) != 1 || len(slow) != 1 || logs.FilterMessage("retrying").Len() != 1 {
		t.Fatalf("failed %d, slow %d, retrying %d lines", len(failed), len(slow), logs.FilterMessage("retrying").Len())
	}
	f := failed[0].ContextMap()
	for _, k := range []string{"handler", "event", "event_id", "correlation_id", "attempt", "duration", "error"} {
		if _, ok := f[k]; !ok {
			t.Errorf("failure line lacks %q: %v", k, f)
		}
	}
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.ContextMap()), "secret-payload-value") {
			t.Errorf("payload logged in %q", e.Message)
		}
	}
}

// A deadline from user middleware (watermill's Timeout, outside the default
// chain) is a failure like any other: retried, then poisoned. Only the bus's
// own shutdown is exempt from poisoning.
func TestUserDeadlineIsAFailureNotAShutdown(t *testing.T) {
	b := bustest.New(t, fast)
	var calls atomic.Int32
	if _, err := bus.Subscribe(b, "user-deadline", func(ctx context.Context, e OrderPlaced) error {
		calls.Add(1)
		<-ctx.Done()
		return ctx.Err()
	}, bus.WithHandlerMiddleware(wmmiddleware.Timeout(30*time.Millisecond)),
		bus.WithRetry(middleware.RetryPolicy{MaxAttempts: 2, InitialInterval: time.Millisecond})); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, 1)
	rec := awaitPoison(t, b, "user-deadline", 1)[0]
	if calls.Load() > 2 || rec.Handler != "user-deadline" {
		t.Errorf("calls %d, record %+v", calls.Load(), rec)
	}
}
