// Package bus is Herald's typed publish-subscribe event bus.
//
// A service publishes a Go value; every handler registered for its type receives
// it, through a middleware chain (retries, correlation IDs, poison queue, panic
// recovery). The transport underneath is in-memory ([memory]) or NATS
// JetStream; swapping one for the other changes the [WithTransport] option and
// nothing in the handlers.
//
//	b, err := bus.New(bus.WithLogger(logger))
//	_, err = bus.Subscribe(b, "billing.charge-card", func(ctx context.Context, e OrderPlaced) error {
//		return charge(ctx, e)
//	})
//	err = b.Start(ctx)
//	err = bus.Publish(ctx, b, OrderPlaced{ID: "o-1"})
//	err = b.Close(ctx)
//
// # Delivery
//
// Every handler subscribed when an event is published receives it at least
// once. A handler that returns nil acknowledges the event; an error is retried
// in two stages (see [middleware.RetryPolicy]): a few attempts in process,
// back to back, then redeliveries through the transport after a
// growing delay, while the worker takes the next events (default: 8 attempts
// in all, 3 of them in process); a [Permanent] error, an undecodable message
// or exhausted attempts send it to the poison queue ([Bus.Poison]), from which
// it can be replayed to that handler alone. A panic counts as an error. With
// concurrency 1 (the default) a handler sees events in publish order, except
// that an event retried through the transport comes back after later ones.
//
// # A handler's life
//
// A handler name that never consumed starts with new events, or from a point
// in the past with [WithStartFrom] (NATS). A handler removed for good leaves
// durable state on NATS: [Bus.OrphanHandlers] lists it and [Bus.DeleteHandler]
// (or [Subscription.Delete]) deletes it.
//
// # Jobs and requests
//
// With [WithTracking], [Bus.Track] tells where an event stands for each
// handler (queued, running, retrying, done, poisoned), so that a client
// handed the event's ID can poll. [Handle] and [Request] are a typed
// request/reply: one handler answers each request, with the middleware chain
// but without retries or the poison queue.
//
// # Defaults
//
// [New] with no options: memory transport (1024 events buffered per handler),
// no-op logger, JSON codec, 1 MiB maximum event size, the default middleware
// chain and retry policy above, poison records kept by the transport,
// concurrency 1 per handler, 30s shutdown timeout for [Bus.Run].
package bus
