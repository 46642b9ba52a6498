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

	"github.com/ThreeDotsLabs/watermill/message"
	wmmiddleware "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/heraldbus/herald/adapters/memory"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/internal/testkit"
	"github.com/heraldbus/herald/middleware"
	"github.com/heraldbus/herald/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type OrderPlaced struct {
	ID     string  `json:"id"`
	Amount float64 `json:"amount"`
	Items  []string
}

type PaymentTaken struct{ OrderID string }

type Renamed struct{ N int }

func (Renamed) EventName() string { return "shop.renamed" }

const wait = 10 * time.Second

var fast = bus.WithDefaultRetry(middleware.RetryPolicy{InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond})

func ctxT(t *testing.T) context.Context { return bustest.Context(t, wait) }

func publishN(t *testing.T, b *bus.Bus, n int) {
	t.Helper()
	for i := range n {
		if err := bus.Publish(ctxT(t), b, OrderPlaced{ID: fmt.Sprint(i), Amount: float64(i)}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
}

func TestConcurrencyNSharesEventsAndRunsInParallel(t *testing.T) {
	b := bustest.New(t)
	var running, peak atomic.Int32
	release := make(chan struct{})
	r := &bustest.Recorder[OrderPlaced]{Fail: func(ctx context.Context, e OrderPlaced) error {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		return nil
	}}
	if _, err := bus.Subscribe(b, "parallel", r.Handle, bus.WithConcurrency(4)); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, 20)
	bustest.Eventually(t, wait, func() bool { return peak.Load() == 4 }, "4 handlers running at once (peak %d)", peak.Load())
	close(release)
	got := r.Wait(t, 20, wait)
	seen := map[string]bool{}
	for _, e := range got {
		if seen[e.ID] {
			t.Errorf("event %s handled twice", e.ID)
		}
		seen[e.ID] = true
	}
}

func TestExhaustedRetriesArePoisoned(t *testing.T) {
	b := bustest.New(t, fast)
	var calls atomic.Int32
	if _, err := bus.Subscribe(b, "always-fails", func(ctx context.Context, e OrderPlaced) error {
		calls.Add(1)
		return errors.New("db down")
	}, bus.WithRetry(middleware.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Millisecond})); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, 1)
	recs := awaitPoison(t, b, "always-fails", 1)
	if calls.Load() != 3 || recs[0].Attempts != 3 {
		t.Errorf("calls %d, record attempts %d; want 3 and 3", calls.Load(), recs[0].Attempts)
	}
	if !recs[0].LastFailure.After(recs[0].FirstFailure) {
		t.Errorf("first failure %v not before last %v", recs[0].FirstFailure, recs[0].LastFailure)
	}
	if len(recs[0].Payload) == 0 || !strings.Contains(string(recs[0].Payload), `"id":"0"`) {
		t.Errorf("record payload %q does not hold the event", recs[0].Payload)
	}
}

func TestPanicIsRecoveredAndPoisonedWithStack(t *testing.T) {
	b := bustest.New(t, fast)
	if _, err := bus.Subscribe(b, "panics", func(ctx context.Context, e OrderPlaced) error {
		panic("nil map somewhere")
	}, bus.WithRetry(middleware.RetryPolicy{MaxAttempts: 2, InitialInterval: time.Millisecond})); err != nil {
		t.Fatal(err)
	}
	ok := bustest.Record[OrderPlaced](t, b, "calm")
	publishN(t, b, 3)
	ok.Wait(t, 3, wait)
	recs := awaitPoison(t, b, "panics", 3)
	for _, r := range recs {
		if !strings.Contains(r.Error, "nil map somewhere") || !strings.Contains(r.Stack, "herald_test.go") || r.Attempts != 2 {
			t.Errorf("record error %q attempts %d stack has test file: %v", r.Error, r.Attempts, strings.Contains(r.Stack, "herald_test.go"))
		}
	}
}

func TestPoisonReplayReachesOnlyTheFailedHandler(t *testing.T) {
	b := bustest.New(t, fast)
	var bugFixed atomic.Bool
	fixed := testkit.FailUntil[OrderPlaced](&bugFixed, bus.Permanent(errors.New("bug")))
	if _, err := bus.Subscribe(b, "buggy", fixed.Handle); err != nil {
		t.Fatal(err)
	}
	good := bustest.Record[OrderPlaced](t, b, "good")
	if err := bus.Publish(ctxT(t), b, OrderPlaced{ID: "o-7", Amount: 7}, bus.WithCorrelationID("req-1")); err != nil {
		t.Fatal(err)
	}
	good.Wait(t, 1, wait)
	recs := awaitPoison(t, b, "buggy", 1)
	got, err := b.Poison().Get(ctxT(t), recs[0].ID)
	if err != nil || got.Event.CorrelationID != "req-1" || got.Handler != "buggy" {
		t.Fatalf("Get = %+v, %v", got, err)
	}

	bugFixed.Store(true)
	if err := b.Poison().Replay(ctxT(t), recs[0].ID); err != nil {
		t.Fatal(err)
	}
	ev := fixed.Wait(t, 1, wait)
	if ev[0].ID != "o-7" || ev[0].Amount != 7 {
		t.Errorf("replayed event = %+v", ev[0])
	}
	m := fixed.Metadata()[0]
	if m.ID != recs[0].Event.ID || m.CorrelationID != "req-1" || m.Attempt != 1 {
		t.Errorf("replayed metadata = %+v", m)
	}
	if _, err := b.Poison().Get(ctxT(t), recs[0].ID); !errors.Is(err, bus.ErrPoisonNotFound) {
		t.Errorf("record still there after replay: %v", err)
	}
}

func TestPoisonPurge(t *testing.T) {
	b := bustest.New(t, fast)
	if _, err := bus.Subscribe(b, "purge-me", func(ctx context.Context, e OrderPlaced) error {
		return bus.Permanent(errors.New("no"))
	}); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, 2)
	recs := awaitPoison(t, b, "purge-me", 2)
	if err := b.Poison().Purge(ctxT(t), recs[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := b.Poison().Purge(ctxT(t), recs[0].ID); !errors.Is(err, bus.ErrPoisonNotFound) {
		t.Errorf("second purge: %v, want ErrPoisonNotFound", err)
	}
	left, _ := b.Poison().List(ctxT(t), "purge-me")
	if len(left) != 1 || left[0].ID != recs[1].ID {
		t.Errorf("left %v", left)
	}
}

func TestSubscriptionStopAlone(t *testing.T) {
	b := bustest.New(t)
	a := bustest.Record[OrderPlaced](t, b, "a")
	rb := &bustest.Recorder[OrderPlaced]{}
	sub, err := bus.Subscribe(b, "b", rb.Handle)
	if err != nil {
		t.Fatal(err)
	}
	publishN(t, b, 1)
	rb.Wait(t, 1, wait)
	if err := sub.Stop(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	<-sub.Done()
	publishN(t, b, 1)
	a.Wait(t, 2, wait)
	if rb.Len() != 1 {
		t.Errorf("stopped handler got %d events", rb.Len())
	}
	// The name is free again.
	again := bustest.Record[OrderPlaced](t, b, "b")
	publishN(t, b, 1)
	again.Wait(t, 1, wait)
}

func TestEventNameMethodAndDerivedName(t *testing.T) {
	b := bustest.New(t)
	r := bustest.Record[Renamed](t, b, "renamed")
	if err := bus.Publish(ctxT(t), b, Renamed{N: 1}); err != nil {
		t.Fatal(err)
	}
	r.Wait(t, 1, wait)
	if n := r.Metadata()[0].Name; n != "shop.renamed" {
		t.Errorf("name %q", n)
	}
}

func TestEncodeAlwaysDecodesPerHandler(t *testing.T) {
	b := bustest.New(t, bus.WithEncodeAlways())
	r := bustest.Record[OrderPlaced](t, b, "wire")
	in := OrderPlaced{ID: "x", Amount: 2.5, Items: []string{"a"}}
	if err := bus.Publish(ctxT(t), b, in); err != nil {
		t.Fatal(err)
	}
	got := r.Wait(t, 1, wait)[0]
	if got.ID != in.ID || got.Amount != in.Amount || len(got.Items) != 1 {
		t.Errorf("decoded %+v", got)
	}
}

func awaitPoison(t *testing.T, b *bus.Bus, handler string, n int) []transport.PoisonRecord {
	t.Helper()
	return testkit.WaitPoison(t, b, handler, n, wait)
}

// flakyStore fails its first puts, then stores in a memory transport.
type flakyStore struct {
	*memory.Transport
	failures atomic.Int32
}

func (f *flakyStore) PutPoison(ctx context.Context, r transport.PoisonRecord) error {
	if f.failures.Add(-1) >= 0 {
		return errors.New("poison stream unavailable")
	}
	return f.Transport.PutPoison(ctx, r)
}

func TestPoisonStoreFailureNacksAndTheEventComesBack(t *testing.T) {
	store := &flakyStore{Transport: memory.New()}
	store.failures.Store(2)
	b := bustest.New(t, bus.WithPoisonStore(store), bus.WithTransport(memory.New(memory.WithRedeliveryDelay(time.Millisecond))))
	var calls atomic.Int32
	if _, err := bus.Subscribe(b, "doomed", func(context.Context, OrderPlaced) error {
		calls.Add(1)
		return bus.Permanent(errors.New("never works"))
	}); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, 1)
	recs := awaitPoison(t, b, "doomed", 1)
	if calls.Load() != 3 {
		t.Errorf("handler called %d times: want 3 (two failed stores → two redeliveries)", calls.Load())
	}
	if recs[0].Event.ID == "" || len(recs) != 1 {
		t.Errorf("records %+v", recs)
	}
}

func TestRunStartsAndClosesOnCancel(t *testing.T) {
	b, err := bus.New(bus.WithShutdownTimeout(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	r := bustest.Record[OrderPlaced](t, b, "run")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()
	bustest.Eventually(t, wait, func() bool {
		return bus.Publish(context.Background(), b, OrderPlaced{ID: "r"}) == nil
	}, "bus running")
	r.Wait(t, 1, wait)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	<-b.Done()
	if err := bus.Publish(context.Background(), b, OrderPlaced{}); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("after Run: %v", err)
	}
}

func TestMiddlewareOrderBusThenHandlerThenDefaults(t *testing.T) {
	var mu sync.Mutex
	var trace []string
	mark := func(name string) message.HandlerMiddleware {
		return func(h message.HandlerFunc) message.HandlerFunc {
			return func(msg *message.Message) ([]*message.Message, error) {
				m := event.MessageMetadata(msg)
				mu.Lock()
				trace = append(trace, fmt.Sprintf("%s@%d", name, m.Attempt))
				mu.Unlock()
				return h(msg)
			}
		}
	}
	b := bustest.New(t, fast, bus.WithMiddleware(mark("bus1"), mark("bus2")))
	var calls atomic.Int32
	r := &bustest.Recorder[OrderPlaced]{Fail: func(context.Context, OrderPlaced) error {
		if calls.Add(1) == 1 {
			return errors.New("once")
		}
		return nil
	}}
	if _, err := bus.Subscribe(b, "ordered-mw", r.Handle, bus.WithHandlerMiddleware(mark("h1"))); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, 1)
	r.Wait(t, 1, wait)
	mu.Lock()
	defer mu.Unlock()
	// User middleware is outside Retry: it runs once per delivery, seeing the
	// first attempt, in bus-then-handler order.
	if got := strings.Join(trace, ","); got != "bus1@1,bus2@1,h1@1" {
		t.Errorf("middleware trace %s", got)
	}
}

func TestPublishBatch(t *testing.T) {
	b := bustest.New(t)
	r := bustest.Record[OrderPlaced](t, b, "batch")
	batch := make([]OrderPlaced, 50)
	for i := range batch {
		batch[i] = OrderPlaced{ID: fmt.Sprint(i)}
	}
	if err := bus.PublishBatch(ctxT(t), b, batch, bus.WithMetadata("tenant", "acme")); err != nil {
		t.Fatal(err)
	}
	got := r.Wait(t, 50, wait)
	ids := map[string]bool{}
	for i, e := range got {
		if e.ID != fmt.Sprint(i) {
			t.Fatalf("batch order broken at %d: %s", i, e.ID)
		}
	}
	for _, m := range r.Metadata() {
		ids[m.ID] = true
	}
	if len(ids) != 50 {
		t.Errorf("%d distinct IDs in a batch of 50", len(ids))
	}
	if err := bus.PublishBatch(ctxT(t), b, batch[:1], bus.WithMessageID("x")); !errors.Is(err, bus.ErrInvalidOption) {
		t.Errorf("WithMessageID in a batch: %v", err)
	}
	bad := []Float{{F: 1}, {F: nanF()}}
	if err := bus.PublishBatch(ctxT(t), b, bad); !errors.Is(err, bus.ErrInvalidEvent) || !strings.Contains(err.Error(), "event 1") {
		t.Errorf("batch with a NaN: %v", err)
	}
}

func TestPublishOptionsReachTheHandler(t *testing.T) {
	b := bustest.New(t)
	var got atomic.Value
	r := &bustest.Recorder[OrderPlaced]{Fail: func(ctx context.Context, _ OrderPlaced) error {
		got.Store(fmt.Sprint(handlers.FromContext(ctx)))
		return nil
	}}
	if _, err := bus.Subscribe(b, "opts", r.Handle, bus.WithHandlerMiddleware(func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			if msg.Metadata.Get("tenant") != "acme" || msg.Metadata.Get("Herald-Id") == "spoof" {
				return nil, bus.Permanent(fmt.Errorf("metadata %v", msg.Metadata))
			}
			return h(msg)
		}
	})); err != nil {
		t.Fatal(err)
	}
	err := bus.Publish(ctxT(t), b, OrderPlaced{ID: "1"}, bus.WithMetadata("Herald-Id", "spoof"))
	if !errors.Is(err, bus.ErrInvalidOption) {
		t.Fatalf("reserved metadata key: %v", err)
	}
	err = bus.Publish(ctxT(t), b, OrderPlaced{ID: "1"}, bus.WithMessageID("my-id"), bus.WithOrderingKey("cust-1"),
		bus.WithMetadata("tenant", "acme"))
	if err != nil {
		t.Fatal(err)
	}
	r.Wait(t, 1, wait)
	m := r.Metadata()[0]
	if m.ID != "my-id" || m.OrderingKey != "cust-1" || m.CorrelationID != "my-id" {
		t.Errorf("metadata %+v", m)
	}
}

type Shared struct{ N int }

type SharedV2 struct {
	N     int
	Extra string
}

func (SharedV2) EventName() string { return "herald_test.Shared" }

func TestPointerAndSameNameTypesAreDeliveredLikeOverTheWire(t *testing.T) {
	b := bustest.New(t)
	r := bustest.Record[Shared](t, b, "shared")
	if err := bus.Publish(ctxT(t), b, &Shared{N: 1}); err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(ctxT(t), b, SharedV2{N: 2, Extra: "x"}); err != nil {
		t.Fatal(err)
	}
	got := r.Wait(t, 2, wait)
	if got[0].N != 1 || got[1].N != 2 {
		t.Errorf("got %+v", got)
	}
	if recs, _ := b.Poison().List(ctxT(t), ""); len(recs) != 0 {
		t.Errorf("poisoned: %+v", recs)
	}
}

type Node struct {
	Name string
	Kids []Node
}

func TestRecursiveEventType(t *testing.T) {
	b := bustest.New(t)
	r := bustest.Record[Node](t, b, "tree")
	if err := bus.Publish(ctxT(t), b, Node{Name: "root", Kids: []Node{{Name: "leaf"}}}); err != nil {
		t.Fatal(err)
	}
	if got := r.Wait(t, 1, wait); got[0].Kids[0].Name != "leaf" {
		t.Errorf("got %+v", got)
	}
}

// failingTransport's subscribers fail for one handler name.
type failingTransport struct {
	*memory.Transport
	bad string
}

func (f failingTransport) Subscriber(name string) (message.Subscriber, error) {
	if name == f.bad {
		return nil, errors.New("boom")
	}
	return f.Transport.Subscriber(name)
}

func TestFailedStartIsTerminal(t *testing.T) {
	// Not a local transport (Subscriber is overridden on a wrapper that hides
	// Join), so the bus goes through the watermill path.
	b, err := bus.New(bus.WithTransport(struct{ transport.Transport }{failingTransport{memory.New(), "c"}}))
	if err != nil {
		t.Fatal(err)
	}
	var subs []*bus.Subscription
	for _, n := range []string{"a", "b", "c"} {
		s, err := bus.Subscribe(b, n, noop[OrderPlaced])
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	if err := b.Start(ctxT(t)); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Start: %v", err)
	}
	if err := b.Start(ctxT(t)); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("second Start after a failure: %v, want the first error again", err)
	}
	if err := b.Close(ctxT(t)); err != nil {
		t.Errorf("Close: %v", err)
	}
	for _, s := range subs {
		select {
		case <-s.Done():
		case <-time.After(wait):
			t.Fatalf("subscription %s not done after Close", s.Name())
		}
	}
}

func TestStopBeforeStartClosesDone(t *testing.T) {
	b, _ := bus.New()
	s, err := bus.Subscribe(b, "never-started", noop[OrderPlaced])
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(wait):
		t.Fatal("Done not closed for a subscription stopped before Start")
	}
	_ = b.Close(ctxT(t))
}

func TestSubscribeRacingClose(t *testing.T) {
	for i := range 50 {
		b, _ := bus.New()
		if err := b.Start(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for j := range 4 {
			wg.Go(func() {
				_, err := bus.Subscribe(b, fmt.Sprint("h", i, "-", j), noop[OrderPlaced])
				if err != nil && !errors.Is(err, bus.ErrClosed) {
					t.Errorf("Subscribe during Close: %v", err)
				}
			})
		}
		if err := b.Close(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
	}
}

// Over a transport that reports its delivery count, the handler's attempt is
// counted from it (a redelivery after a nack or a crash is not attempt 1: with
// the default policy the second delivery is attempt 4, after the first
// delivery's 3 in-process ones), and a count a publisher set is not taken for
// the transport's.
func TestDeliveryCountIsTheAttempt(t *testing.T) {
	tr := memory.New(memory.WithRedeliveryDelay(time.Millisecond))
	b := bustest.New(t, bus.WithTransport(struct{ transport.Transport }{tr})) // hides the fast path
	var seen atomic.Int32
	r := bustest.Record[OrderPlaced](t, b, "counted", bus.WithHandlerMiddleware(func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			if seen.Add(1) == 1 {
				return nil, middleware.Defer(errors.New("not yet")) // nacked, not poisoned
			}
			return h(msg)
		}
	}))
	msg := message.NewMessage(event.NewID(), []byte(`{"id":"x"}`))
	event.SetMetadata(msg.Metadata, transport.Event{ID: msg.UUID, Name: "herald_test.OrderPlaced"})
	msg.Metadata.Set(transport.KeyDeliveryCount, "7") // a publisher's claim, ignored
	if err := tr.Publisher().Publish("herald_test.OrderPlaced", msg); err != nil {
		t.Fatal(err)
	}
	r.Wait(t, 1, wait)
	if m := r.Metadata(); m[0].Attempt != 4 {
		t.Errorf("attempt %d, want 4 (the second delivery)", m[0].Attempt)
	}
}

// ---- errors: what the public API refuses, and how ----

type WithChan struct {
	C chan int
}

type WithFunc struct {
	F func()
}

type BadName struct{}

func (BadName) EventName() string { return "orders.*" }

type Reserved struct{}

func (Reserved) EventName() string { return "_replay.x" }

type Float struct{ F float64 }

type Big struct{ S string }

func noop[E any](context.Context, E) error { return nil }

func TestPublishBeforeStartIsErrNotStarted(t *testing.T) {
	b, err := bus.New()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close(context.Background()) }()
	if err := bus.Publish(context.Background(), b, OrderPlaced{}); !errors.Is(err, bus.ErrNotStarted) {
		t.Fatalf("got %v, want ErrNotStarted", err)
	}
}

func TestClosedBusRefusesEverything(t *testing.T) {
	b, err := bus.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(context.Background(), b, OrderPlaced{}); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Publish: %v", err)
	}
	if _, err := bus.Subscribe(b, "x", noop[OrderPlaced]); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Subscribe: %v", err)
	}
	if err := b.Start(context.Background()); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Start: %v", err)
	}
	if err := b.Poison().Replay(context.Background(), "nope"); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Replay: %v", err)
	}
}

func TestDuplicateHandlerName(t *testing.T) {
	b := bustest.New(t)
	if _, err := bus.Subscribe(b, "same", noop[OrderPlaced]); err != nil {
		t.Fatal(err)
	}
	_, err := bus.Subscribe(b, "same", noop[PaymentTaken])
	if !errors.Is(err, bus.ErrDuplicateHandler) || !strings.Contains(err.Error(), `"same"`) {
		t.Fatalf("got %v, want ErrDuplicateHandler naming the handler", err)
	}
}

func TestInvalidNames(t *testing.T) {
	b := bustest.New(t)
	for _, name := range []string{"", "a b", "a.*", "orders.>", "a..b", ".a", "a.", "tab\there", strings.Repeat("x", 256)} {
		if _, err := bus.Subscribe(b, name, noop[OrderPlaced]); !errors.Is(err, bus.ErrInvalidName) {
			t.Errorf("handler name %q: %v, want ErrInvalidName", name, err)
		}
	}
	if _, err := bus.Subscribe(b, "ok", noop[BadName]); !errors.Is(err, bus.ErrInvalidName) {
		t.Errorf("event name with '*': %v", err)
	}
	if err := bus.Publish(context.Background(), b, BadName{}); !errors.Is(err, bus.ErrInvalidName) {
		t.Errorf("publish of an invalid event name: %v", err)
	}
	if _, err := bus.Subscribe(b, "ok2", noop[Reserved]); !errors.Is(err, bus.ErrInvalidName) {
		t.Errorf("reserved event name: %v", err)
	}
	if _, err := bus.Subscribe(b, "ok3", noop[struct{ A int }]); !errors.Is(err, bus.ErrInvalidName) {
		t.Errorf("unnamed type: %v", err)
	}
	for _, name := range []string{"billing.charge-card", "a", "x_y.z-1"} {
		if _, err := bus.Subscribe(b, name, noop[OrderPlaced]); err != nil {
			t.Errorf("valid name %q refused: %v", name, err)
		}
	}
}

func TestUnencodableEvents(t *testing.T) {
	b := bustest.New(t)
	if _, err := bus.Subscribe(b, "chan", noop[WithChan]); !errors.Is(err, bus.ErrInvalidEvent) {
		t.Errorf("Subscribe of a type with a chan field: %v", err)
	}
	if err := bus.Publish(context.Background(), b, WithFunc{}); !errors.Is(err, bus.ErrInvalidEvent) {
		t.Errorf("Publish of a type with a func field: %v", err)
	}
	r := bustest.Record[Float](t, b, "floats")
	for _, f := range []float64{nanF(), infF()} {
		if err := bus.Publish(context.Background(), b, Float{F: f}); !errors.Is(err, bus.ErrInvalidEvent) {
			t.Errorf("Publish of %v: %v, want ErrInvalidEvent (it could not cross to NATS)", f, err)
		}
	}
	if err := bus.Publish(context.Background(), b, Float{F: 1.5}); err != nil {
		t.Fatal(err)
	}
	if got := r.Wait(t, 1, wait); got[0].F != 1.5 {
		t.Errorf("got %v", got)
	}
}

func nanF() float64 { z := 0.0; return z / z }
func infF() float64 { z := 0.0; return 1 / z }

func TestEventTooLarge(t *testing.T) {
	b := bustest.New(t, bus.WithMaxEventSize(1000))
	r := bustest.Record[Big](t, b, "big")
	err := bus.Publish(context.Background(), b, Big{S: strings.Repeat("é", 600)})
	if !errors.Is(err, bus.ErrEventTooLarge) {
		t.Fatalf("got %v, want ErrEventTooLarge", err)
	}
	// Near the limit: the bound alone cannot prove it fits, encoding does.
	if err := bus.Publish(context.Background(), b, Big{S: strings.Repeat("a", 900)}); err != nil {
		t.Fatalf("a 910-byte event under a 1000-byte limit: %v", err)
	}
	if got := r.Wait(t, 1, wait); len(got[0].S) != 900 {
		t.Errorf("got %d bytes", len(got[0].S))
	}
	if r.Len() != 1 {
		t.Errorf("the refused event was delivered")
	}
}

func TestCancelledContext(t *testing.T) {
	b := bustest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := bus.Publish(ctx, b, OrderPlaced{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish: %v", err)
	}
	b2, _ := bus.New()
	if err := b2.Start(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Start: %v", err)
	}
	_ = b2.Close(context.Background())
}

func TestPublishBlocksOnAFullQueueAndHonoursCtx(t *testing.T) {
	b := bustest.New(t, bus.WithTransport(memory.New(memory.WithBufferSize(4))))
	release := make(chan struct{})
	r := &bustest.Recorder[OrderPlaced]{Fail: func(ctx context.Context, _ OrderPlaced) error {
		<-release
		return nil
	}}
	if _, err := bus.Subscribe(b, "slow", r.Handle); err != nil {
		t.Fatal(err)
	}
	// 1 in the handler + 4 queued; the next must wait.
	for range 5 {
		if err := bus.Publish(ctxT(t), b, OrderPlaced{}); err != nil {
			t.Fatal(err)
		}
	}
	bustest.Eventually(t, wait, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		return errors.Is(bus.Publish(ctx, b, OrderPlaced{}), context.DeadlineExceeded)
	}, "Publish on a full queue waits and returns ctx's error")
	close(release)
	if err := bus.Publish(ctxT(t), b, OrderPlaced{ID: "after"}); err != nil {
		t.Fatal(err)
	}
	r.Wait(t, 6, wait)
}

func TestInvalidOptions(t *testing.T) {
	cases := map[string]bus.Option{
		"nil transport":  bus.WithTransport(nil),
		"nil logger":     bus.WithLogger(nil),
		"nil codec":      bus.WithCodec(nil),
		"nil middleware": bus.WithMiddleware(nil),
		"size":           bus.WithMaxEventSize(0),
		"retry":          bus.WithDefaultRetry(middleware.RetryPolicy{MaxAttempts: -1}),
		"multiplier":     bus.WithDefaultRetry(middleware.RetryPolicy{Multiplier: 0.5}),
		"shutdown":       bus.WithShutdownTimeout(-time.Second),
		"nil option":     nil,
	}
	for name, o := range cases {
		if _, err := bus.New(o); !errors.Is(err, bus.ErrInvalidOption) {
			t.Errorf("%s: %v, want ErrInvalidOption", name, err)
		}
	}
	b := bustest.New(t)
	for name, o := range map[string]bus.SubscribeOption{
		"concurrency": bus.WithConcurrency(0),
		"retry":       bus.WithRetry(middleware.RetryPolicy{Jitter: 2}),
		"middleware":  bus.WithHandlerMiddleware(nil),
	} {
		if _, err := bus.Subscribe(b, "h", noop[OrderPlaced], o); !errors.Is(err, bus.ErrInvalidOption) {
			t.Errorf("%s: %v, want ErrInvalidOption", name, err)
		}
	}
	if _, err := bus.Subscribe[OrderPlaced](b, "h", nil); !errors.Is(err, bus.ErrInvalidOption) {
		t.Errorf("nil func: %v", err)
	}
}

func TestDecodeErrorIsPoisonedAtOnceAndTestable(t *testing.T) {
	tr := memory.New()
	b := bustest.New(t, bus.WithTransport(tr), fast)
	r := bustest.Record[OrderPlaced](t, b, "strict")
	msg := message.NewMessage("raw-1", []byte(`{"id": 12`))
	msg.Metadata.Set(transport.KeyID, "raw-1")
	msg.Metadata.Set(transport.KeyEvent, "herald_test.OrderPlaced")
	if err := tr.Publisher().Publish("herald_test.OrderPlaced", msg); err != nil {
		t.Fatal(err)
	}
	recs := awaitPoison(t, b, "strict", 1)
	if recs[0].Attempts != 1 || !strings.Contains(recs[0].Error, "malformed payload") || string(recs[0].Payload) != `{"id": 12` {
		t.Errorf("record %+v", recs[0])
	}
	if r.Len() != 0 {
		t.Error("handler called with an undecodable event")
	}
	// The error value itself, as a handler-level check sees it.
	h := event.New("herald_test.OrderPlaced", noop[OrderPlaced], handlers.JSON{}, true)
	bad := message.NewMessage("x", []byte("nope"))
	event.SetMetadata(bad.Metadata, transport.Event{ID: "x", Name: "herald_test.OrderPlaced"})
	event.Bind(bad, "strict", 1)
	_, err := h(bad)
	var de *bus.DecodeError
	if !errors.As(err, &de) || de.Event != "herald_test.OrderPlaced" || !handlers.IsPermanent(err) {
		t.Errorf("got %v, want a *DecodeError that is permanent", err)
	}
}

func TestPermanentWrapsAndUnwraps(t *testing.T) {
	base := errors.New("base")
	p := bus.Permanent(base)
	if !errors.Is(p, base) || !handlers.IsPermanent(p) || handlers.IsPermanent(base) || bus.Permanent(nil) != nil {
		t.Error("Permanent does not wrap as documented")
	}
	if !handlers.IsPermanent(errors.Join(errors.New("x"), p)) {
		t.Error("IsPermanent does not see through joins")
	}
}

func TestReplayErrors(t *testing.T) {
	b := bustest.New(t)
	if err := b.Poison().Replay(ctxT(t), "missing"); !errors.Is(err, bus.ErrPoisonNotFound) {
		t.Errorf("replay of a missing record: %v", err)
	}
	if _, err := b.Poison().Get(ctxT(t), "missing"); !errors.Is(err, bus.ErrPoisonNotFound) {
		t.Errorf("get of a missing record: %v", err)
	}
	sub, err := bus.Subscribe(b, "gone", func(context.Context, OrderPlaced) error { return bus.Permanent(errors.New("x")) })
	if err != nil {
		t.Fatal(err)
	}
	publishN(t, b, 1)
	recs := awaitPoison(t, b, "gone", 1)
	if err := sub.Stop(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := b.Poison().Replay(ctxT(t), recs[0].ID); !errors.Is(err, bus.ErrNoHandler) {
		t.Errorf("replay to an unsubscribed handler on memory: %v, want ErrNoHandler", err)
	}
	if _, err := b.Poison().Get(ctxT(t), recs[0].ID); err != nil {
		t.Errorf("the record must survive a refused replay: %v", err)
	}
}

// ---- middleware through the bus ----

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
