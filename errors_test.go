package herald_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/adapters/memory"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/middleware"
	"github.com/heraldbus/herald/transport"
)

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
