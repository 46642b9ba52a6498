// Package ctxkey holds the context key under which the bus puts the delivery
// a handler is running, shared by package handlers (which reads it) and
// internal/event (which sets it) without an import cycle.
package ctxkey

// Delivery is the key of the running delivery in a handler's context.
type Delivery struct{}
