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

// RetryPolicy says how often a failing handler is retried, and where. It has
// two stages, as NServiceBus has:
//
//   - Immediate: the first ImmediateAttempts attempts run in process, back to
//     back on the handler's worker, within one delivery: a transient failure
//     that the next attempt fixes costs one attempt, not a sleep.
//   - Delayed: when they all failed, the event goes back to the transport,
//     which delivers it again after RedeliveryDelay, then Multiplier times
//     longer at each further redelivery, up to MaxRedeliveryDelay; each
//     redelivery is one attempt. The worker takes the next event meanwhile,
//     so a failing event never holds its handler's queue in a backoff; the
//     cost is order: the retried event comes after events published after it.
//
// Attempts are counted across redeliveries (from the delivery count the
// transport reports), and when MaxAttempts have failed the event goes to the
// poison queue. A delivery that ended for another reason (shutdown, an open
// circuit breaker, a crash) counts as a redelivery too.
//
// Every attempt runs in process instead, in one delivery, when
// ImmediateAttempts is at least MaxAttempts, for handlers with ordering by key
// (whose events must keep their place: see [RetryPolicy.InProcess]), and on a
// transport that reports no delivery count. Those retries are spaced in
// process: InitialInterval before the first, growing by Multiplier up to
// MaxInterval, with jitter; the worker waits meanwhile.
//
// Zero fields take the defaults shown; the zero RetryPolicy is the default
// policy: 3 attempts back to back, then redeliveries after 1s, 2s, 4s, 8s and
// 16s, then the poison queue.
type RetryPolicy struct {
	MaxAttempts int // attempts in all, the first included, across redeliveries; default 8; 1 disables retries
	// ImmediateAttempts is how many of the attempts run in process, back to
	// back, within the first delivery; default 3. Set it to MaxAttempts (or
	// more) to make every retry in process, spaced by InitialInterval: the
	// event keeps its place, and the worker waits.
	ImmediateAttempts int
	InitialInterval   time.Duration // wait before the first retry when every retry runs in process; default 100ms
	MaxInterval       time.Duration // cap on one such wait; default 10s, or InitialInterval if that is longer
	Multiplier        float64       // growth of the waits and of the redelivery delays; default 2
	// Jitter randomises each in-process wait by ±Jitter of itself; default
	// 0.5. Use a negative value for no jitter.
	Jitter float64
	// RedeliveryDelay is the delay before the first delayed redelivery;
	// default 1s, at most 24h.
	RedeliveryDelay time.Duration
	// MaxRedeliveryDelay caps the redelivery delay; default 1 minute (or
	// RedeliveryDelay if that is longer), at most 24h.
	MaxRedeliveryDelay time.Duration
}

// DefaultRetryPolicy is the policy a handler gets when none is configured.
var DefaultRetryPolicy = RetryPolicy{MaxAttempts: 8, ImmediateAttempts: 3, InitialInterval: 100 * time.Millisecond,
	MaxInterval: 10 * time.Second, Multiplier: 2, Jitter: 0.5, RedeliveryDelay: time.Second, MaxRedeliveryDelay: time.Minute}

// maxDelay bounds the redelivery delays (a NATS server's limit is far above;
// nothing legitimate needs more).
const maxDelay = 24 * time.Hour

// WithDefaults returns p with zero fields set from [DefaultRetryPolicy].
func (p RetryPolicy) WithDefaults() RetryPolicy {
	d := DefaultRetryPolicy
	if p.MaxAttempts != 0 {
		d.MaxAttempts = p.MaxAttempts
	}
	if p.ImmediateAttempts != 0 {
		d.ImmediateAttempts = p.ImmediateAttempts
	}
	if p.InitialInterval != 0 {
		d.InitialInterval = p.InitialInterval
	}
	if p.MaxInterval != 0 {
		d.MaxInterval = p.MaxInterval
	} else if d.InitialInterval > d.MaxInterval {
		d.MaxInterval = d.InitialInterval
	}
	if p.Multiplier != 0 {
		d.Multiplier = p.Multiplier
	}
	if p.Jitter > 0 {
		d.Jitter = p.Jitter
	} else if p.Jitter < 0 {
		d.Jitter = 0
	}
	if p.RedeliveryDelay != 0 {
		d.RedeliveryDelay = p.RedeliveryDelay
	}
	if p.MaxRedeliveryDelay != 0 {
		d.MaxRedeliveryDelay = p.MaxRedeliveryDelay
	}
	d.MaxRedeliveryDelay = max(d.MaxRedeliveryDelay, d.RedeliveryDelay)
	return d
}

// Validate returns an error wrapping [ErrInvalidPolicy] for negative counts or
// durations, a redelivery delay above 24h, a multiplier below 1 or a jitter
// above 1.
func (p RetryPolicy) Validate() error {
	switch {
	case p.MaxAttempts < 0:
		return fmt.Errorf("%w: MaxAttempts %d < 0", ErrInvalidPolicy, p.MaxAttempts)
	case p.ImmediateAttempts < 0:
		return fmt.Errorf("%w: ImmediateAttempts %d < 0", ErrInvalidPolicy, p.ImmediateAttempts)
	case p.InitialInterval < 0 || p.MaxInterval < 0 || p.RedeliveryDelay < 0 || p.MaxRedeliveryDelay < 0:
		return fmt.Errorf("%w: negative interval or delay", ErrInvalidPolicy)
	case p.RedeliveryDelay > maxDelay || p.MaxRedeliveryDelay > maxDelay:
		return fmt.Errorf("%w: redelivery delay above %v", ErrInvalidPolicy, maxDelay)
	case p.Multiplier != 0 && p.Multiplier < 1:
		return fmt.Errorf("%w: Multiplier %v < 1", ErrInvalidPolicy, p.Multiplier)
	case p.Jitter > 1:
		return fmt.Errorf("%w: Jitter %v > 1", ErrInvalidPolicy, p.Jitter)
	}
	return nil
}

// InProcess returns p with every attempt in process (ImmediateAttempts at
// least MaxAttempts): what the bus uses for handlers with ordering by key,
// whose events must keep their place.
func (p RetryPolicy) InProcess() RetryPolicy {
	p = p.WithDefaults()
	p.ImmediateAttempts = max(p.ImmediateAttempts, p.MaxAttempts)
	return p
}

// redeliveryDelay is the delay after the failed delivery number n (1 the
// first): RedeliveryDelay × Multiplier^(n-1), capped.
func (p RetryPolicy) redeliveryDelay(n int) time.Duration {
	d := float64(p.RedeliveryDelay)
	for i := 1; i < n && d < float64(p.MaxRedeliveryDelay); i++ {
		d *= p.Multiplier
	}
	return min(time.Duration(d), p.MaxRedeliveryDelay)
}

// RedeliveryError is returned by [Retry] when the in-process attempts of a
// delivery failed and attempts remain: the event is to be delivered again by
// the transport after Delay. It wraps [ErrDeferred] (errors.Is), so Poison
// lets it through and the bus nacks the event, asking the transport for Delay
// (transport.KeyRedeliveryDelay); Unwrap gives the last attempt's error.
type RedeliveryError struct {
	Delay    time.Duration // how long the transport should wait before delivering the event again
	Attempts int           // the attempts made so far, across deliveries
	Err      error         // the last attempt's error
}

// Error implements error.
func (e *RedeliveryError) Error() string {
	return fmt.Sprintf("attempt %d failed, redelivery in %v: %v", e.Attempts, e.Delay, e.Err)
}

// Unwrap returns the last attempt's error.
func (e *RedeliveryError) Unwrap() error { return e.Err }

// Is reports true for [ErrDeferred]: a delayed retry is a deferred delivery.
func (e *RedeliveryError) Is(target error) bool { return target == ErrDeferred }

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

// Retry retries a failing handler following p (see [RetryPolicy] for its two
// stages): it calls the handler again in process, back to back, up to
// p.ImmediateAttempts attempts in the first delivery; then, while attempts
// remain, it returns a [*RedeliveryError] and the transport delivers the
// event again later, one attempt per redelivery. When every attempt runs in
// process (see RetryPolicy), the retries are spaced by a growing, jittered
// wait instead. It stops at once on a permanent error ([handlers.IsPermanent]:
// a [handlers.Permanent] error or a decode error) or a deferred one
// ([IsDeferred]). Each in-process retry is logged at Info ("retrying", with
// the backoff), each delayed one too ("retrying later", with the delay).
//
// It returns a [*RetryError] once p.MaxAttempts attempts have failed (the
// event is then poisoned), and the handler's error as it is for a permanent
// or deferred one. If the message's context ends during a wait, Retry stops
// and returns the last error (the delivery is then nacked, not poisoned). It
// sets the Attempt of the delivery's metadata, counted across redeliveries
// when the bus knows the delivery count ([event.Deliveries]).
//
// Unlike watermill's Retry it allocates nothing when the handler succeeds: the
// backoff state is built after the first failure. Invalid policies are fixed
// with [RetryPolicy.WithDefaults]; validate them first with Validate.
func Retry(p RetryPolicy, logger *zap.Logger) message.HandlerMiddleware {
	p = p.WithDefaults()
	if logger == nil {
		logger = zap.NewNop()
	}
	staged := p.ImmediateAttempts < p.MaxAttempts
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			n := event.Deliveries(msg)
			if staged && n > 1 {
				// A delayed redelivery: one attempt, numbered after the
				// first delivery's in-process ones.
				event.SetAttempt(msg, p.ImmediateAttempts+n-1)
			}
			out, err := h(msg)
			if err == nil || p.MaxAttempts <= 1 || handlers.IsPermanent(err) || IsDeferred(err) {
				return out, err
			}
			return retry(p, logger, h, msg, err, staged && n > 0, n)
		}
	}
}

// retry goes on after the first attempt of a delivery failed with err.
// staged says whether the delayed stage applies; n is the delivery count.
func retry(p RetryPolicy, logger *zap.Logger, h message.HandlerFunc, msg *message.Message, err error, staged bool, n int) ([]*message.Message, error) {
	ctx := msg.Context()
	m, bound := event.Metadata(msg)
	var meta *handlers.Metadata // for the log lines
	if bound {
		meta = &m
	}
	base := 1 // the number of this delivery's first attempt
	if a := event.Attempt(msg); a > 0 {
		base = a
	}
	budget := p.MaxAttempts // attempts in this delivery
	if staged {
		budget = 1
		if n == 1 {
			budget = min(p.ImmediateAttempts, p.MaxAttempts)
		}
	}
	first := time.Now()
	var bo *backoff.ExponentialBackOff
	attempt := 1
	for attempt < budget && ctx.Err() == nil {
		var wait time.Duration
		if !staged { // all in process: space the retries
			if bo == nil {
				bo = backoff.NewExponentialBackOff()
				bo.InitialInterval = p.InitialInterval
				bo.MaxInterval = p.MaxInterval
				bo.Multiplier = p.Multiplier
				bo.RandomizationFactor = p.Jitter
				bo.Reset()
			}
			wait = bo.NextBackOff()
		}
		if ce := logger.Check(zap.InfoLevel, "retrying"); ce != nil {
			ce.Write(deliveryFields(ctx, meta, zap.Int("attempt", base+attempt-1), zap.Duration("backoff", wait), zap.Error(err))...)
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, err
			case <-t.C:
			}
		}
		attempt++
		if bound {
			event.SetAttempt(msg, base+attempt-1)
		}
		var out []*message.Message
		out, err = h(msg)
		if err == nil {
			return out, nil
		}
		if handlers.IsPermanent(err) || IsDeferred(err) {
			return nil, &RetryError{Attempts: base + attempt - 1, FirstFailure: first, LastFailure: time.Now(), Err: err}
		}
	}
	if ctx.Err() != nil {
		return nil, err // shutdown: nacked, not poisoned
	}
	made := base + attempt - 1
	if staged && made < p.MaxAttempts {
		delay := p.redeliveryDelay(n)
		if ce := logger.Check(zap.InfoLevel, "retrying later"); ce != nil {
			ce.Write(deliveryFields(ctx, meta, zap.Int("attempt", made), zap.Duration("delay", delay), zap.Error(err))...)
		}
		return nil, &RedeliveryError{Delay: delay, Attempts: made, Err: err}
	}
	return nil, &RetryError{Attempts: made, FirstFailure: first, LastFailure: time.Now(), Err: err}
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
