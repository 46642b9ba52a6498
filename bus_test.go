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
	"go.uber.org/goleak"

	"github.com/heraldbus/herald/adapters/memory"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/event"
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

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

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
		if !strings.Contains(r.Error, "nil map somewhere") || !strings.Contains(r.Stack, "bus_test.go") || r.Attempts != 2 {
			t.Errorf("record error %q attempts %d stack has test file: %v", r.Error, r.Attempts, strings.Contains(r.Stack, "bus_test.go"))
		}
	}
}

func TestPoisonReplayReachesOnlyTheFailedHandler(t *testing.T) {
	b := bustest.New(t, fast)
	var broken atomic.Bool
	broken.Store(true)
	fixed := &bustest.Recorder[OrderPlaced]{Fail: func(ctx context.Context, e OrderPlaced) error {
		if broken.Load() {
			return bus.Permanent(errors.New("bug"))
		}
		return nil
	}}
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

	broken.Store(false)
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

func TestCorrelationAndCausationFlowThroughAHandler(t *testing.T) {
	b := bustest.New(t)
	if _, err := bus.Subscribe(b, "billing", func(ctx context.Context, e OrderPlaced) error {
		return bus.Publish(ctx, b, PaymentTaken{OrderID: e.ID})
	}); err != nil {
		t.Fatal(err)
	}
	orders := bustest.Record[OrderPlaced](t, b, "audit-orders")
	pays := bustest.Record[PaymentTaken](t, b, "audit-payments")
	if err := bus.Publish(ctxT(t), b, OrderPlaced{ID: "o-1"}); err != nil {
		t.Fatal(err)
	}
	orders.Wait(t, 1, wait)
	pays.Wait(t, 1, wait)
	om, pm := orders.Metadata()[0], pays.Metadata()[0]
	if om.CorrelationID != om.ID || om.CausationID != "" {
		t.Errorf("root event: %+v", om)
	}
	if pm.CorrelationID != om.ID || pm.CausationID != om.ID || pm.ID == om.ID {
		t.Errorf("consequence %+v of %+v", pm, om)
	}
	if pm.Handler != "audit-payments" || pm.Name != "herald_test.PaymentTaken" || pm.PublishedAt.IsZero() {
		t.Errorf("metadata %+v", pm)
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
	var recs []transport.PoisonRecord
	bustest.Eventually(t, wait, func() bool {
		var err error
		recs, err = b.Poison().List(context.Background(), handler)
		return err == nil && len(recs) >= n
	}, "%d poison records for %s", n, handler)
	return recs
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
