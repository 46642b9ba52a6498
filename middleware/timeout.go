package middleware

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// ErrTimeout is returned (wrapped, with context.DeadlineExceeded) when a handler
// attempt did not finish within its timeout.
var ErrTimeout = errors.New("herald: handler timed out")

// Timeout cancels the handler's context d after the attempt starts. An attempt
// that fails once its deadline has passed returns an error wrapping [ErrTimeout]
// and context.DeadlineExceeded: a retryable failure. Placed inside Retry (as
// bus.WithAttemptTimeout does), every attempt gets its own deadline. A handler that
// ignores its ctx is not interrupted: Go cannot stop a goroutine.
//
// Watermill's Timeout only sets the deadline; this one also tells a timeout
// from the handler's own errors, so that logs and poison records say so.
func Timeout(d time.Duration) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			parent := msg.Context()
			ctx, cancel := context.WithTimeout(parent, d)
			defer cancel()
			msg.SetContext(ctx)
			defer msg.SetContext(parent)
			out, err := h(msg)
			if err != nil && ctx.Err() == context.DeadlineExceeded && parent.Err() == nil {
				return out, fmt.Errorf("%w after %v: %w", ErrTimeout, d, err)
			}
			return out, err
		}
	}
}
