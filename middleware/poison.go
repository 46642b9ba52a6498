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
)

// PoisonRecord is an event a handler could not process, kept so that it can be
// inspected, replayed to that handler, or purged.
type PoisonRecord struct {
	ID           string            `json:"id"`              // the record's own ID
	Handler      string            `json:"handler"`         // the handler that failed
	Event        handlers.Metadata `json:"event"`           // the event's metadata (Attempt and Handler unset)
	Payload      []byte            `json:"payload"`         // the encoded event
	Metadata     message.Metadata  `json:"metadata"`        // the message's metadata as delivered
	Error        string            `json:"error"`           // the last error
	Stack        string            `json:"stack,omitempty"` // the stack of the panic, if the handler panicked
	Attempts     int               `json:"attempts"`
	FirstFailure time.Time         `json:"first_failure"`
	LastFailure  time.Time         `json:"last_failure"`
}

// PoisonStore keeps poison records. Implementations must be safe for concurrent
// use and honour ctx. A transport that can store records durably implements it
// (the bus then uses the transport as its store).
type PoisonStore interface {
	// PutPoison stores rec; when it returns nil the record is durable as far
	// as the store goes, and the event is then acknowledged.
	PutPoison(ctx context.Context, rec PoisonRecord) error
	// ListPoison returns the records of handler ("" for all), oldest first.
	ListPoison(ctx context.Context, handler string) ([]PoisonRecord, error)
	// GetPoison returns the record with id; found is false if there is none.
	GetPoison(ctx context.Context, id string) (rec PoisonRecord, found bool, err error)
	// DeletePoison removes the record with id; found is false if there was none.
	DeletePoison(ctx context.Context, id string) (found bool, err error)
}

// ErrPoisonStore wraps a failure to store a poison record; the event is then
// nacked and comes back.
var ErrPoisonStore = errors.New("herald: cannot store poison record")

// Poison stores a record of every delivery the handler fails, in store, and then
// acknowledges it (returns nil) so that the main flow goes on. A failure while
// the handler is stopping ([handlers.Stopping]: the bus or subscription is
// shutting down) is returned as it is and nothing is stored: shutdown never
// poisons an event (a deadline set by middleware, by contrast, is a failure); so is a
// deferred one ([ErrDeferred]: an open circuit breaker). If the store
// fails, Poison returns an error wrapping [ErrPoisonStore] and the handler's error,
// and the event is nacked.
//
// Unlike watermill's PoisonQueue, the record keeps the attempts, the first and
// last failure times and a panic's stack, and it can be replayed to the one
// handler that failed.
func Poison(store PoisonStore, logger *zap.Logger) message.HandlerMiddleware {
	if logger == nil {
		logger = zap.NewNop()
	}
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			ctx := msg.Context()
			out, err := h(msg)
			if err == nil || handlers.Stopping(msg) || IsDeferred(err) {
				return out, err
			}
			rec := NewPoisonRecord(msg, err)
			if perr := store.PutPoison(context.WithoutCancel(ctx), rec); perr != nil {
				logger.Error("cannot store poison record; event will be redelivered",
					recordFields(&rec, zap.Error(perr), zap.NamedError("handler_error", err))...)
				return nil, fmt.Errorf("%w: %w (handler error: %w)", ErrPoisonStore, perr, err)
			}
			logger.Error("event poisoned",
				recordFields(&rec, zap.String("poison_id", rec.ID), zap.Int("attempts", rec.Attempts), zap.String("error", rec.Error))...)
			return out, nil
		}
	}
}

// NewPoisonRecord builds the record of msg failing with err.
func NewPoisonRecord(msg *message.Message, err error) PoisonRecord {
	now := time.Now()
	rec := PoisonRecord{ID: handlers.NewID(), Error: err.Error(), Attempts: 1, FirstFailure: now, LastFailure: now}
	if meta := handlers.MessageMetadata(msg); meta != nil {
		rec.Event = *meta
	} else {
		rec.Event, _ = handlers.ParseMetadata(msg.Metadata)
		if rec.Event.ID == "" {
			rec.Event.ID = msg.UUID
		}
	}
	rec.Handler = rec.Event.Handler
	if rec.Event.Attempt > 0 {
		rec.Attempts = rec.Event.Attempt
	}
	rec.Event.Attempt, rec.Event.Handler = 0, ""
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
	payload, perr := handlers.Payload(msg)
	if perr != nil {
		rec.Error += fmt.Sprintf(" (and the event could not be encoded for the record: %v)", perr)
	}
	rec.Payload = payload
	rec.Metadata = make(message.Metadata, len(msg.Metadata)+6)
	maps.Copy(rec.Metadata, msg.Metadata)
	if rec.Event.ID != "" && rec.Event.Name != "" {
		handlers.SetMetadata(rec.Metadata, rec.Event)
	}
	return rec
}

func recordFields(rec *PoisonRecord, extra ...zap.Field) []zap.Field {
	meta := rec.Event
	meta.Handler = rec.Handler
	return deliveryFields(&meta, extra...)
}
