package middleware

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	wmmiddleware "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/transport"
)

// ErrPoisonStore wraps a failure to store a poison record; the event is then
// nacked and comes back.
var ErrPoisonStore = errors.New("herald: cannot store poison record")

// Poison stores a record of every delivery the handler fails, in store, and then
// acknowledges it (returns nil) so that the main flow goes on. A failure while
// the handler is stopping ([event.Stopping]: the bus or subscription is
// shutting down) is returned as it is and nothing is stored: shutdown never
// poisons an event (a deadline set by middleware, by contrast, is a failure); so is a
// deferred one ([ErrDeferred]: an open circuit breaker). If the store
// fails, Poison returns an error wrapping [ErrPoisonStore] and the handler's error,
// and the event is nacked.
//
// Once the record is stored, Poison marks the delivery as poisoned, so that
// telemetry outside it (Tracing.Process, Metrics, bus.Stats) can tell it from
// a handled one.
//
// Unlike watermill's PoisonQueue, the record keeps the attempts, the first and
// last failure times and a panic's stack, and it can be replayed to the one
// handler that failed.
func Poison(store transport.PoisonStore, logger *zap.Logger) message.HandlerMiddleware {
	if logger == nil {
		logger = zap.NewNop()
	}
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			ctx := msg.Context()
			out, err := h(msg)
			if err == nil || event.Stopping(msg) || IsDeferred(err) {
				return out, err
			}
			rec := NewPoisonRecord(msg, err)
			if perr := store.PutPoison(context.WithoutCancel(ctx), rec); perr != nil {
				logger.Error("cannot store poison record; event will be redelivered",
					recordFields(ctx, &rec, zap.Error(perr), zap.NamedError("handler_error", err))...)
				return nil, fmt.Errorf("%w: %w (handler error: %w)", ErrPoisonStore, perr, err)
			}
			event.MarkPoisoned(msg)
			logger.Error("event poisoned",
				recordFields(ctx, &rec, zap.String("poison_id", rec.ID), zap.Int("attempts", rec.Attempts), zap.String("error", rec.Error))...)
			return out, nil
		}
	}
}

// NewPoisonRecord builds the record of msg failing with err.
func NewPoisonRecord(msg *message.Message, err error) transport.PoisonRecord {
	now := time.Now()
	rec := transport.PoisonRecord{ID: event.NewID(), Error: err.Error(), Attempts: 1, FirstFailure: now, LastFailure: now}
	if meta, ok := event.Metadata(msg); ok {
		rec.Event = meta.Event
		rec.Handler = meta.Handler
		if meta.Attempt > 0 {
			rec.Attempts = meta.Attempt
		}
	} else {
		rec.Event, _ = event.ParseMetadata(msg.Metadata)
		if rec.Event.ID == "" {
			rec.Event.ID = msg.UUID
		}
	}
	var re *RetryError
	if errors.As(err, &re) {
		rec.Attempts, rec.FirstFailure, rec.LastFailure = re.Attempts, re.FirstFailure, re.LastFailure
	}
	var pe *handlers.PanicError
	var wpe wmmiddleware.RecoveredPanicError
	if errors.As(err, &pe) {
		rec.Stack = pe.Stack
	} else if errors.As(err, &wpe) {
		rec.Stack = wpe.Stacktrace
	}
	payload, perr := event.Payload(msg)
	if perr != nil {
		rec.Error += fmt.Sprintf(" (and the event could not be encoded for the record: %v)", perr)
	}
	rec.Payload = payload
	rec.Metadata = make(message.Metadata, len(msg.Metadata)+6)
	maps.Copy(rec.Metadata, msg.Metadata)
	if rec.Event.ID != "" && rec.Event.Name != "" {
		event.SetMetadata(rec.Metadata, rec.Event)
	}
	return rec
}

func recordFields(ctx context.Context, rec *transport.PoisonRecord, extra ...zap.Field) []zap.Field {
	meta := handlers.Metadata{Event: rec.Event, Handler: rec.Handler}
	return deliveryFields(ctx, &meta, extra...)
}
