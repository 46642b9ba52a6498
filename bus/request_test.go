package bus_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald/adapters/memory"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/middleware"
)

type quoteReq struct{ SKU string }
type quoteResp struct{ Cents int }

func TestRequestAnswers(t *testing.T) {
	b := bustest.New(t)
	if _, err := bus.Handle(b, "pricing", func(ctx context.Context, r quoteReq) (quoteResp, error) {
		switch r.SKU {
		case "fail":
			return quoteResp{}, errors.New("no price for\\nfail")
		case "panic":
			panic("boom")
		case "slow":
			<-ctx.Done()
			return quoteResp{}, ctx.Err()
		}
		return quoteResp{Cents: len(r.SKU) * 100}, nil
	}, bus.WithConcurrency(2)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := bus.Request[quoteReq, quoteResp](ctx, b, quoteReq{SKU: "abc"})
	if err != nil || got.Cents != 300 {
		t.Fatalf("got %+v, %v", got, err)
	}
	_, err = bus.Request[quoteReq, quoteResp](ctx, b, quoteReq{SKU: "fail"})
	var re *bus.RemoteError
	if !errors.As(err, &re) || re.Handler != "pricing" || re.Message != "no price for\\nfail" {
		t.Fatalf("handler error: %#v", err)
	}
	_, err = bus.Request[quoteReq, quoteResp](ctx, b, quoteReq{SKU: "panic"})
	if !errors.As(err, &re) || !strings.Contains(re.Message, "panicked: boom") || strings.Contains(re.Message, "goroutine") {
		t.Fatalf("panic: %#v", err)
	}
	short, c2 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer c2()
	_, err = bus.Request[quoteReq, quoteResp](short, b, quoteReq{SKU: "slow"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	if _, err := bus.Request[quoteResp, quoteReq](ctx, b, quoteResp{}); !errors.Is(err, bus.ErrNoResponder) {
		t.Fatalf("no responder: %v", err)
	}
}

func TestHandleRules(t *testing.T) {
	b := bustest.New(t)
	fn := func(context.Context, quoteReq) (quoteResp, error) { return quoteResp{}, nil }
	if _, err := bus.Handle(b, "a", fn, bus.WithRetry(middleware.RetryPolicy{MaxAttempts: 2})); !errors.Is(err, bus.ErrInvalidOption) {
		t.Errorf("WithRetry: %v", err)
	}
	if _, err := bus.Handle(b, "a", fn); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Handle(b, "a", fn); !errors.Is(err, bus.ErrDuplicateHandler) {
		t.Errorf("same name: %v", err)
	}
	if _, err := bus.Handle(b, "b", fn); !errors.Is(err, bus.ErrDuplicateHandler) {
		t.Errorf("same request type: %v", err)
	}
	if _, err := bus.Handle(b, "bad name", fn); !errors.Is(err, bus.ErrInvalidName) {
		t.Errorf("bad name: %v", err)
	}
}

// Close stops the responders after the requests in flight have answered;
// Request then says ErrClosed.
func TestCloseWaitsForRequestsInFlight(t *testing.T) {
	b, err := bus.New(bus.WithTransport(memory.New()))
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	var answered atomic.Bool
	if _, err := bus.Handle(b, "slow", func(ctx context.Context, r quoteReq) (quoteResp, error) {
		close(started)
		<-release
		answered.Store(true)
		return quoteResp{Cents: 1}, nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() {
		_, err := bus.Request[quoteReq, quoteResp](ctx, b, quoteReq{})
		res <- err
	}()
	<-started
	closed := make(chan error, 1)
	go func() { closed <- b.Close(ctx) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned before the request in flight answered: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-res; err != nil {
		t.Fatalf("request in flight: %v", err)
	}
	if err := <-closed; err != nil || !answered.Load() {
		t.Fatalf("close: %v", err)
	}
	if _, err := bus.Request[quoteReq, quoteResp](ctx, b, quoteReq{}); !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}
