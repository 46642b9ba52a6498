package middleware

import (
	"github.com/ThreeDotsLabs/watermill/message"
	"golang.org/x/time/rate"
)

// RateLimit lets the handler run at most limit times per second on average,
// with bursts of up to burst, across all of the handler's workers. A worker
// waits for its token in its own goroutine (no goroutine per event); if the
// delivery's context ends while it waits, the delivery is deferred (nacked, not
// poisoned). Every attempt, retries included, takes a token.
//
// Watermill's Throttle ticks at a fixed rate with no burst and does not
// honour the message's context, hence this one over golang.org/x/time/rate.
func RateLimit(limit rate.Limit, burst int) message.HandlerMiddleware {
	l := rate.NewLimiter(limit, burst)
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			if err := l.Wait(msg.Context()); err != nil {
				return nil, Defer(err)
			}
			return h(msg)
		}
	}
}
