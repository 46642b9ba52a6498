package middleware

import (
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/event"
)

// DefaultSlowThreshold is the handler duration above which Logging warns.
const DefaultSlowThreshold = 5 * time.Second

// epoch is the origin of Logging's monotonic clock readings.
var epoch = time.Now()

// Logging writes one structured line per handler attempt that fails (Warn),
// takes longer than slow (Warn), or succeeds (Debug), with the handler, event
// name, event ID, correlation ID, attempt and duration. Payloads are never
// logged. slow <= 0 means [DefaultSlowThreshold]. On success with Debug off it
// allocates nothing.
func Logging(logger *zap.Logger, slow time.Duration) message.HandlerMiddleware {
	if logger == nil {
		logger = zap.NewNop()
	}
	if slow <= 0 {
		slow = DefaultSlowThreshold
	}
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			// Monotonic readings only: time.Since of a time.Time that has
			// one reads the monotonic clock alone, where time.Now reads the
			// wall clock too.
			start := time.Since(epoch)
			out, err := h(msg)
			d := time.Since(epoch) - start
			level, text := zapcore.DebugLevel, "handled"
			switch {
			case err != nil:
				level, text = zapcore.WarnLevel, "handler attempt failed"
			case d > slow:
				level, text = zapcore.WarnLevel, "slow handler"
			}
			if ce := logger.Check(level, text); ce != nil {
				var meta *handlers.Metadata
				if m, ok := event.Metadata(msg); ok {
					meta = &m
				}
				ce.Write(deliveryFields(msg.Context(), meta, zap.Int("attempt", event.Attempt(msg)), zap.Duration("duration", d), zap.Error(err))...)
			}
			return out, err
		}
	}
}
