package middleware

import (
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	wmmiddleware "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/sony/gobreaker"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/handlers"
)

// ErrCircuitOpen is returned (wrapped, with [ErrDeferred]) while a handler's
// circuit breaker is open: the handler was not called and the event will be
// redelivered later.
var ErrCircuitOpen = errors.New("herald: circuit breaker open")

// BreakerConfig configures [CircuitBreaker]. The zero value trips after 5
// consecutive failures, stays open 30s, then lets 1 probe through.
type BreakerConfig struct {
	// Name names the breaker in logs; bus.WithCircuitBreaker sets the handler's name.
	Name string
	// ConsecutiveFailures trips the breaker; default 5.
	ConsecutiveFailures uint32
	// OpenFor is how long the breaker stays open before it lets probes through
	// (half-open); default 30s.
	OpenFor time.Duration
	// Probes is how many deliveries may run while half-open; default 1. They
	// all succeeding closes the breaker; one failing opens it again.
	Probes uint32
}

// Validate returns an error for a negative OpenFor.
func (c BreakerConfig) Validate() error {
	if c.OpenFor < 0 {
		return fmt.Errorf("herald: circuit breaker OpenFor %v < 0", c.OpenFor)
	}
	return nil
}

// CircuitBreaker stops calling the handler after cfg.ConsecutiveFailures
// failures in a row. While it is open, deliveries fail at once with an error
// wrapping [ErrCircuitOpen] and [ErrDeferred]: not retried in process, not
// poisoned, but nacked, so the transport redelivers them later. After OpenFor
// it lets Probes deliveries through (half-open) and closes again if they
// succeed. Permanent errors ([handlers.IsPermanent]: bad events, not a sick
// dependency) do not count as failures. State changes are logged at Warn.
//
// It is watermill's CircuitBreaker middleware (sony/gobreaker) with these
// settings, and with its open-state errors marked deferred.
func CircuitBreaker(cfg BreakerConfig, logger *zap.Logger) message.HandlerMiddleware {
	if logger == nil {
		logger = zap.NewNop()
	}
	if cfg.ConsecutiveFailures == 0 {
		cfg.ConsecutiveFailures = 5
	}
	if cfg.OpenFor <= 0 {
		cfg.OpenFor = 30 * time.Second
	}
	threshold := cfg.ConsecutiveFailures
	cb := wmmiddleware.NewCircuitBreaker(gobreaker.Settings{
		Name:        cfg.Name,
		MaxRequests: cfg.Probes,
		Timeout:     cfg.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= threshold },
		IsSuccessful: func(err error) bool {
			return err == nil || handlers.IsPermanent(err) || IsDeferred(err)
		},
		OnStateChange: func(name string, from, to gobreaker.State) {
			logger.Warn("circuit breaker state changed", zap.String("handler", name),
				zap.String("from", from.String()), zap.String("to", to.String()))
		},
	})
	return func(h message.HandlerFunc) message.HandlerFunc {
		inner := cb.Middleware(h)
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := inner(msg)
			if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
				return nil, fmt.Errorf("%w: %w: %w", ErrDeferred, ErrCircuitOpen, err)
			}
			return out, err
		}
	}
}
