// Package shipping is the shipping service of the microservices example: it
// ships every order that is paid for.
package shipping

import (
	"context"
	"sync"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/examples/microservices/events"
)

// HandlerName is shipping's handler of PaymentTaken.
const HandlerName = "shipping.ship-order"

// Shipper ships paid orders and remembers which, so that the example can wait
// for them. It is safe for concurrent use.
type Shipper struct {
	b *bus.Bus

	mu      sync.Mutex
	shipped map[string]bool
	changed chan struct{}
}

// New returns a Shipper publishing on b.
func New(b *bus.Bus) *Shipper {
	return &Shipper{b: b, shipped: map[string]bool{}, changed: make(chan struct{})}
}

// Ship is the handler of PaymentTaken: like billing.ChargeCard, the same
// function in a monolith and in this service. A redelivered payment (NATS
// delivers at least once) ships nothing twice.
func (s *Shipper) Ship(ctx context.Context, e events.PaymentTaken) error {
	s.mu.Lock()
	again := s.shipped[e.OrderID]
	s.mu.Unlock()
	if again {
		return nil
	}
	if err := bus.Publish(ctx, s.b, events.OrderShipped{OrderID: e.OrderID, Tracking: "trk_" + e.OrderID}); err != nil {
		return err
	}
	s.mu.Lock()
	s.shipped[e.OrderID] = true
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return nil
}

// Register subscribes s.Ship to b.
func (s *Shipper) Register() error {
	_, err := bus.Subscribe(s.b, HandlerName, s.Ship, bus.WithConcurrency(2))
	return err
}

// Wait waits until every order in ids is shipped, or ctx ends.
func (s *Shipper) Wait(ctx context.Context, ids []string) error {
	for {
		s.mu.Lock()
		missing := 0
		for _, id := range ids {
			if !s.shipped[id] {
				missing++
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if missing == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
