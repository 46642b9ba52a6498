// Package middleware holds Herald's handler middleware. Each is a watermill
// [message.HandlerMiddleware] (a plain func(HandlerFunc) HandlerFunc), so
// watermill's own middleware mixes in freely, bus-wide or per handler.
//
// # The chain
//
// The bus wraps every handler, outermost first, as:
//
//	bus-wide middleware          bus.WithMiddleware: every handler, once per delivery
//	 handler middleware          bus.WithHandlerMiddleware: this handler, once per delivery
//	  Recover                    a panic in any middleware below becomes an error
//	   Correlation               every delivery has a correlation ID; produced messages inherit it
//	    Poison                   a failure that survived Retry is recorded, then acked
//	     [Dedup]                 bus.WithDedup: skip events this handler already completed
//	      Retry                  backoff with jitter; permanent, decode and deferred errors skip it
//	       [RateLimit]           bus.WithRateLimit: every attempt takes a token
//	        [CircuitBreaker]     bus.WithCircuitBreaker: open → deferred (redelivered later)
//	         Logging             a line per failed or slow attempt; Debug per success
//	          [Timeout]          bus.WithAttemptTimeout: each attempt has its own deadline
//	           handler           the typed handler; its own panics become *handlers.PanicError
//
// Bracketed middleware is present only when its option is given. The order is
// the contract, and each position has its reason:
//
//   - User middleware is outside the defaults, so it sees each delivery once,
//     whatever the retries, and its errors are neither retried nor poisoned.
//   - Poison is outside Retry, so only a failure that retries could not fix is
//     recorded; it never records a delivery whose context ended (shutdown) or a
//     deferred one ([ErrDeferred]).
//   - Dedup is inside Poison, so a poisoned event is not marked done and its
//     replay runs; and outside Retry, so "done" means the whole delivery.
//   - RateLimit, CircuitBreaker, Logging and Timeout are inside Retry: they act
//     on every attempt. The breaker counts each attempt; while it is open, Retry
//     stops at once and the transport redelivers the event later.
//
// A panic in the handler is recovered by the handler itself (package
// handlers), so Retry sees an error and Poison records the stack; Recover only
// guards the middleware.
//
// A request handler (bus.Handle) gets the same chain without Poison, Dedup and
// Retry: the caller of bus.Request decides what a failure means. With
// bus.WithTracking, the bus adds its tracking records around the handler
// (inside Retry) and outside Recover (poisoned deliveries).
//
// # Telemetry
//
// [Tracing] and [Metrics] each come as two middleware: one per delivery
// (Tracing.Process, the process half of Metrics.Handler), which must sit
// outside Poison to see poisoned deliveries, and one per attempt
// (Tracing.Attempt, the attempt half), which must sit inside Retry.
// bus.WithTracing and bus.WithMetrics put the first outermost, around the
// whole chain above, and the second around the handler. With tracing, the
// log lines of this package carry trace_id and span_id.
//
// On success none of the default middleware allocates; Retry builds its
// backoff state only after a failure.
package middleware
