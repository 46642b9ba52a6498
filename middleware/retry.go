package middleware

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/cenkalti/backoff/v5"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/event"
)

// ErrInvalidPolicy is returned (wrapped) by [RetryPolicy.Validate].
var ErrInvalidPolicy = errors.New("herald: invalid retry policy")

// RetryPolicy says how often and how long a failing handler is retried. Zero
// fields take the defaults shown; the zero RetryPolicy is the default policy.
type RetryPolicy struct {
	MaxAttempts     int           // attempts in all, the first included; default 5; 1 disables retries
	InitialInterval time.Duration // wait before the first retry; default 100ms
	MaxInterval     time.Duration // cap on one wait; default 10s
	Multiplier      float64       // growth of the wait per retry; default 2
	// Jitter randomises each wait by ±Jitter of itself; default 0.5. Use a
	// negative value for no jitter.
	Jitter float64
}

// DefaultRetryPolicy is the policy a handler gets when none is configured.
var DefaultRetryPolicy = RetryPolicy{MaxAttempts: 5, InitialInterval: 100 * time.Millisecond, MaxInterval: 10 * time.Second, Multiplier: 2, Jitter: 0.5}

// WithDefaults returns p with zero fields set from [DefaultRetryPolicy].
func (p RetryPolicy) WithDefaults() RetryPolicy {
	d := DefaultRetryPolicy
	if p.MaxAttempts != 0 {
		d.MaxAttempts = p.MaxAttempts
	}
	if p.InitialInterval != 0 {
		d.InitialInterval = p.InitialInterval
	}
	if p.MaxInterval != 0 {
		d.MaxInterval = p.MaxInterval
	}
	if p.Multiplier != 0 {
		d.Multiplier = p.Multiplier
	}
	if p.Jitter > 0 {
		d.Jitter = p.Jitter
	} else if p.Jitter < 0 {
		d.Jitter = 0
	}
	return d
}

// Validate returns an error wrapping [ErrInvalidPolicy] for negative counts or
// durations, a multiplier below 1 or a jitter above 1.
func (p RetryPolicy) Validate() error {
	switch {
	case p.MaxAttempts < 0:
		return fmt.Errorf("%w: MaxAttempts %d < 0", ErrInvalidPolicy, p.MaxAttempts)
	case p.InitialInterval < 0 || p.MaxInterval < 0:
		return fmt.Errorf("%w: negative interval", ErrInvalidPolicy)
	case p.Multiplier != 0 && p.Multiplier < 1:
		return fmt.Errorf("%w: Multiplier %v < 1", ErrInvalidPolicy, p.Multiplier)
	case p.Jitter > 1:
		return fmt.Errorf("%w: Jitter %v > 1", ErrInvalidPolicy, p.Jitter)
	}
	return nil
}

// RetryError is returned by [Retry] when the attempts ran out or a permanent
// error ended them. Poison reads it for the record.
type RetryError struct {
	Attempts     int
	FirstFailure time.Time
	LastFailure  time.Time
	Err          error // the last attempt's error
}

// Error implements error.
func (e *RetryError) Error() string {
	return fmt.Sprintf("failed after %d attempts: %v", e.Attempts, e.Err)
}

// Unwrap returns the last attempt's error.
func (e *RetryError) Unwrap() error { return e.Err }

// Retry calls the handler again after a failure, waiting an exponentially
// growing, jittered interval between attempts, until it succeeds, the policy's
// attempts run out, or the error is permanent ([handlers.IsPermanent]: a
// [handlers.Permanent] error or a decode error) or deferred ([IsDeferred]).
// Each retry is logged at Info ("retrying", with the backoff). It returns a [*RetryError] after
// a failure that was retried, the handler's error as it is otherwise. If the
// message's context ends during a wait, Retry stops and returns the last error
// (the delivery is then nacked, not poisoned). It updates the Attempt of the
// delivery's metadata.
//
// Unlike watermill's Retry it allocates nothing when the handler succeeds: the
// backoff state is built after the first failure. Invalid policies are fixed
// with [RetryPolicy.WithDefaults]; validate them first with Validate.
func Retry(p RetryPolicy, logger *zap.Logger) message.HandlerMiddleware {
	p = p.WithDefaults()
	if logger == nil {
		logger = zap.NewNop()
	}
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if err == nil || p.MaxAttempts <= 1 || handlers.IsPermanent(err) || IsDeferred(err) {
				return out, err
			}
			return retry(p, logger, h, msg, err)
		}
	}
}

func retry(p RetryPolicy, logger *zap.Logger, h message.HandlerFunc, msg *message.Message, err error) ([]*message.Message, error) {
	ctx := msg.Context()
	meta := event.MessageMetadata(msg)
	base := 1
	if meta != nil && meta.Attempt > 0 {
		base = meta.Attempt
	}
	first := time.Now()
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = p.InitialInterval
	bo.MaxInterval = p.MaxInterval
	bo.Multiplier = p.Multiplier
	bo.RandomizationFactor = p.Jitter
	bo.Reset()
	attempt := 1
	for attempt < p.MaxAttempts {
		wait := bo.NextBackOff()
		if ce := logger.Check(zap.InfoLevel, "retrying"); ce != nil {
			ce.Write(deliveryFields(ctx, meta, zap.Int("attempt", base+attempt-1), zap.Duration("backoff", wait), zap.Error(err))...)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		attempt++
		if meta != nil {
			meta.Attempt = base + attempt - 1
		}
		var out []*message.Message
		out, err = h(msg)
		if err == nil {
			return out, nil
		}
		if handlers.IsPermanent(err) || IsDeferred(err) || ctx.Err() != nil {
			break
		}
	}
	return nil, &RetryError{Attempts: base + attempt - 1, FirstFailure: first, LastFailure: time.Now(), Err: err}
}

// deliveryFields are the fields of a log line about a delivery: its metadata,
// the trace and span IDs of the span active in ctx (if any), then extra.
func deliveryFields(ctx context.Context, meta *handlers.Metadata, extra ...zap.Field) []zap.Field {
	fields := make([]zap.Field, 0, 6+len(extra))
	if meta != nil {
		fields = append(fields,
			zap.String("handler", meta.Handler),
			zap.String("event", meta.Name),
			zap.String("event_id", meta.ID),
			zap.String("correlation_id", meta.CorrelationID))
	}
	fields = appendTraceFields(ctx, fields)
	return append(fields, extra...)
}
