// Package billing is the billing service of the microservices example: it
// charges the card of every order placed.
package billing

import (
	"context"
	"errors"
	"fmt"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/examples/microservices/events"
)

// HandlerName is billing's handler of OrderPlaced: on NATS, its durable
// consumer, shared by every billing replica.
const HandlerName = "billing.charge-card"

// ChargeCard returns the handler that charges an order and publishes
// PaymentTaken on b.
//
// This is the same function a monolith registers on its in-memory bus: it
// knows nothing of NATS. Run as its own service over NATS (as here), it is
// unchanged; only the transport given to bus.New differs. The Publish with the
// handler's ctx makes PaymentTaken a consequence of the OrderPlaced being
// handled (same correlation ID, causation ID = the order event's ID).
func ChargeCard(b *bus.Bus) func(ctx context.Context, e events.OrderPlaced) error {
	return func(ctx context.Context, e events.OrderPlaced) error {
		if e.Cents <= 0 {
			// Retrying cannot fix this: straight to the poison queue.
			return bus.Permanent(errors.New("billing: order amount must be positive"))
		}
		return bus.Publish(ctx, b, events.PaymentTaken{
			OrderID:  e.OrderID,
			Cents:    e.Cents,
			ChargeID: fmt.Sprintf("ch_%s", e.OrderID),
		})
	}
}

// Register subscribes billing's handlers to b.
func Register(b *bus.Bus) error {
	_, err := bus.Subscribe(b, HandlerName, ChargeCard(b), bus.WithConcurrency(4))
	return err
}
