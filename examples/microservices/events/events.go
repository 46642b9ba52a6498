// Package events holds the event types the services of the microservices
// example share: the contract between them. Each type names itself with
// EventName, so that the name (the NATS subject) does not depend on the Go
// package it lives in. Without EventName, a type's name is its package name
// and type name ("events.OrderPlaced"): a service that moved the type to a
// package of its own would publish on another subject, with no error, and its
// handlers would wait forever. One shared package, and names that say their
// version, avoid both traps.
package events

import "time"

// OrderPlaced is published by the orders service when a customer orders.
type OrderPlaced struct {
	OrderID  string `json:"order_id"`
	Customer string `json:"customer"`
	Cents    int64  `json:"cents"`
}

// EventName returns "orders.v1.placed".
func (OrderPlaced) EventName() string { return "orders.v1.placed" }

// PaymentTaken is published by billing once an order's card is charged.
type PaymentTaken struct {
	OrderID  string    `json:"order_id"`
	Cents    int64     `json:"cents"`
	ChargeID string    `json:"charge_id"`
	At       time.Time `json:"at"`
}

// EventName returns "billing.v1.payment-taken".
func (PaymentTaken) EventName() string { return "billing.v1.payment-taken" }

// OrderShipped is published by shipping once an order is on its way.
type OrderShipped struct {
	OrderID  string `json:"order_id"`
	Tracking string `json:"tracking"`
}

// EventName returns "shipping.v1.shipped".
func (OrderShipped) EventName() string { return "shipping.v1.shipped" }
