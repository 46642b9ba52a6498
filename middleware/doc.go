// Package middleware holds Herald's handler middleware. Each is a watermill
// [message.HandlerMiddleware], so watermill's own middleware mixes in freely.
//
// # The default chain
//
// Every handler a bus runs is wrapped, outermost first, as:
//
//	bus-wide middleware (bus.WithMiddleware)
//	  per-handler middleware (bus.WithHandlerMiddleware)
//	    Recover      watermill's Recoverer: a panic in any middleware becomes an error
//	      Correlation  every delivery has a correlation ID; produced messages inherit it
//	        Poison       a failure that survived retries goes to the poison store, then acks
//	          Retry        exponential backoff with jitter; permanent and decode errors skip it
//	            handler      the typed handler (it turns its own panics into *handlers.PanicError)
//
// A panic in the handler is recovered by the handler itself, so Retry sees an
// error and Poison records the stack; Recover only guards the middleware.
//
// On success none of these allocate. Retry builds its backoff state only after
// a failure.
package middleware
