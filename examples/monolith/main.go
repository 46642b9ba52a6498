// Command monolith is a small shop in one process: an order is placed, billing
// charges it, inventory reserves its items, and email confirms it, each a
// handler on one Herald bus over the in-memory transport.
//
// It shows the reliability chain at work: inventory fails twice on a
// transient error and succeeds on its third attempt (retry); email refuses an
// order with an invalid address (a permanent error), which goes to the poison
// queue, is fixed and replayed to email alone. Every log line carries the
// correlation ID of the order that caused it. It exits on its own, with status
// 0 when everything happened as described.
//
//	go run ./examples/monolith
//
// With -ops ADDR it serves the operator page (package ops) on ADDR under
// /ops/, and stays up after the story until interrupted:
//
//	go run ./examples/monolith -ops 127.0.0.1:8080
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/middleware"
	"github.com/heraldbus/herald/transport"
)

// OrderPlaced is published when a customer places an order.
type OrderPlaced struct {
	OrderID string   `json:"order_id"`
	Email   string   `json:"email"`
	Items   []string `json:"items"`
	Cents   int64    `json:"cents"`
}

// PaymentCaptured is published by billing once an order is paid.
type PaymentCaptured struct {
	OrderID string `json:"order_id"`
	Cents   int64  `json:"cents"`
}

// shop holds the handlers' state; the handlers are its methods.
type shop struct {
	b      *bus.Bus
	log    *zap.Logger
	mu     sync.Mutex
	done   map[string][]string // handler → order IDs handled
	stock  atomic.Int32        // inventory calls, to fail the first two
	fixed  atomic.Bool         // email's address fix has been deployed
	events chan string
}

// logger returns a logger with the metadata of the event being handled.
func (s *shop) logger(ctx context.Context) *zap.Logger {
	m, _ := handlers.FromContext(ctx)
	return s.log.With(zap.String("handler", m.Handler), zap.String("event", m.Name),
		zap.String("correlation_id", m.CorrelationID), zap.Int("attempt", m.Attempt))
}

func (s *shop) record(handler, orderID string) {
	s.mu.Lock()
	s.done[handler] = append(s.done[handler], orderID)
	s.mu.Unlock()
	s.events <- handler + ":" + orderID
}

// chargeCard is billing's handler: it charges the order and publishes the
// consequence with the handler's ctx, which links the two events.
func (s *shop) chargeCard(ctx context.Context, e OrderPlaced) error {
	s.logger(ctx).Info("charging card", zap.String("order", e.OrderID), zap.Int64("cents", e.Cents))
	if err := bus.Publish(ctx, s.b, PaymentCaptured{OrderID: e.OrderID, Cents: e.Cents}); err != nil {
		return err
	}
	s.record("billing", e.OrderID)
	return nil
}

// reserveStock is inventory's handler; the warehouse API times out twice.
func (s *shop) reserveStock(ctx context.Context, e OrderPlaced) error {
	if s.stock.Add(1) <= 2 {
		return errors.New("warehouse API timeout")
	}
	s.logger(ctx).Info("stock reserved", zap.String("order", e.OrderID), zap.Strings("items", e.Items))
	s.record("inventory", e.OrderID)
	return nil
}

// sendConfirmation is email's handler; an invalid address cannot be fixed by
// retrying, so it is a permanent error, until a fix is deployed.
func (s *shop) sendConfirmation(ctx context.Context, e OrderPlaced) error {
	if !strings.Contains(e.Email, "@") && !s.fixed.Load() {
		return bus.Permanent(fmt.Errorf("invalid address %q", e.Email))
	}
	s.logger(ctx).Info("confirmation sent", zap.String("order", e.OrderID))
	s.record("email", e.OrderID)
	return nil
}

// receipt is an accounting handler for the consequence event.
func (s *shop) receipt(ctx context.Context, e PaymentCaptured) error {
	s.logger(ctx).Info("receipt filed", zap.String("order", e.OrderID))
	s.record("accounting", e.OrderID)
	return nil
}

// run tells the story on a new bus. With opsLn, it serves the operator page
// on it, and returns only once ctx ends.
func run(ctx context.Context, log *zap.Logger, opsLn net.Listener) error {
	b, err := bus.New(bus.WithLogger(log),
		// Short backoff so the demo is quick; the default starts at 100ms.
		bus.WithDefaultRetry(middleware.RetryPolicy{InitialInterval: 20 * time.Millisecond}))
	if err != nil {
		return err
	}
	s := &shop{b: b, log: log, done: map[string][]string{}, events: make(chan string, 64)}
	subs := []error{
		subscribe(b, "billing.charge-card", s.chargeCard),
		subscribe(b, "inventory.reserve", s.reserveStock),
		subscribe(b, "email.confirm", s.sendConfirmation),
		subscribe(b, "accounting.receipt", s.receipt),
	}
	if err := errors.Join(subs...); err != nil {
		return err
	}
	if err := b.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = b.Close(context.WithoutCancel(ctx)) }()
	if opsLn != nil {
		stop, err := serveOps(b, opsLn)
		if err != nil {
			return err
		}
		defer stop()
		log.Info("operator page", zap.String("url", "http://"+opsLn.Addr().String()+"/ops/"))
	}

	orders := []OrderPlaced{
		{OrderID: "o-1", Email: "ada@example.com", Items: []string{"kettle"}, Cents: 4900},
		{OrderID: "o-2", Email: "grace.example.com", Items: []string{"mug", "tea"}, Cents: 1800},
	}
	for _, o := range orders {
		if err := bus.Publish(ctx, b, o); err != nil {
			return err
		}
		log.Info("order placed", zap.String("order", o.OrderID))
	}
	// billing ×2, inventory ×2 (after retries), accounting ×2, email ×1.
	if err := s.await(ctx, 7); err != nil {
		return err
	}
	var recs []transport.PoisonRecord
	for len(recs) == 0 {
		if recs, err = b.Poison().List(ctx, "email.confirm"); err != nil {
			return err
		}
		if len(recs) == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	r := recs[0]
	log.Warn("poison record", zap.String("id", r.ID), zap.String("handler", r.Handler),
		zap.String("correlation_id", r.Event.CorrelationID), zap.String("error", r.Error), zap.Int("attempts", r.Attempts))

	s.fixed.Store(true) // deploy the fix, then replay to email alone
	if err := b.Poison().Replay(ctx, r.ID); err != nil {
		return err
	}
	if err := s.await(ctx, 1); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, want := range map[string]int{"billing": 2, "inventory": 2, "email": 2, "accounting": 2} {
		if got := len(s.done[h]); got != want {
			return fmt.Errorf("%s handled %d orders, want %d", h, got, want)
		}
	}
	log.Info("all orders handled", zap.Any("handled", s.done))
	if opsLn != nil {
		log.Info("serving the operator page until interrupted")
		<-ctx.Done()
	}
	return nil
}

func subscribe[E any](b *bus.Bus, name string, fn func(context.Context, E) error) error {
	_, err := bus.Subscribe(b, name, fn)
	return err
}

func (s *shop) await(ctx context.Context, n int) error {
	for range n {
		select {
		case <-s.events:
		case <-ctx.Done():
			return fmt.Errorf("waiting for handlers: %w", ctx.Err())
		}
	}
	return nil
}

func main() {
	log, _ := zap.NewDevelopment(zap.WithCaller(false), zap.AddStacktrace(zap.DPanicLevel))
	defer func() { _ = log.Sync() }()
	opsAddr := flag.String("ops", "", "serve the operator page on this address (e.g. 127.0.0.1:8080) and stay up until interrupted")
	flag.Parse()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	var opsLn net.Listener
	if *opsAddr == "" {
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	} else {
		var err error
		if opsLn, err = net.Listen("tcp", *opsAddr); err != nil {
			log.Error("monolith: -ops", zap.Error(err))
			os.Exit(2)
		}
	}
	if err := run(ctx, log, opsLn); err != nil {
		log.Error("monolith failed", zap.Error(err))
		os.Exit(1)
	}
}
