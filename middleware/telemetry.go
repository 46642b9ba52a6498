package middleware

import (
	"context"
	"errors"
	"reflect"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/handlers"
)

// What Tracing and Metrics share: attribute keys, the outcome of a delivery,
// the error type, and the metadata carrier of the trace context.

// Attribute keys of OpenTelemetry's messaging conventions, and Herald's own.
const (
	AttrSystem         = attribute.Key("messaging.system")
	AttrDestination    = attribute.Key("messaging.destination.name")
	AttrConsumerGroup  = attribute.Key("messaging.consumer.group.name")
	AttrMessageID      = attribute.Key("messaging.message.id")
	AttrConversationID = attribute.Key("messaging.message.conversation_id")
	AttrOperationName  = attribute.Key("messaging.operation.name")
	AttrOperationType  = attribute.Key("messaging.operation.type")
	AttrBatchCount     = attribute.Key("messaging.batch.message_count")
	AttrErrorType      = attribute.Key("error.type")
	// AttrAttempt is the attempt number of an attempt event; AttrAttempts
	// the number of attempts a delivery took.
	AttrAttempt  = attribute.Key("herald.attempt")
	AttrAttempts = attribute.Key("herald.attempts")
	// AttrOutcome is how an attempt or a delivery ended: one of the Outcome
	// values.
	AttrOutcome = attribute.Key("herald.outcome")
)

// Outcomes of a delivery (and of its last attempt), the values of
// [AttrOutcome]. An attempt that failed and was followed by another has the
// outcome [OutcomeRetried].
const (
	OutcomeHandled  = "handled"  // the handler succeeded; the event is acked
	OutcomeRetried  = "retried"  // the attempt failed and the handler was called again
	OutcomePoisoned = "poisoned" // the event went to the poison queue and is acked
	OutcomeDelayed  = "delayed"  // deferred ([ErrDeferred]): nacked, redelivered later
	OutcomeNacked   = "nacked"   // nacked for another reason (shutdown, poison store down, middleware error)
)

// outcome is how a delivery ended, seen from outside Poison: err is what the
// chain below returned; normal is false if it never returned
// (runtime.Goexit in the handler, which the bus answers by poisoning);
// poisoned is [event.Poisoned] of the message.
func outcome(err error, normal, poisoned bool) string {
	switch {
	case !normal:
		return OutcomePoisoned
	case err == nil && poisoned:
		return OutcomePoisoned
	case err == nil:
		return OutcomeHandled
	case IsDeferred(err):
		return OutcomeDelayed
	default:
		return OutcomeNacked
	}
}

// ErrorType returns a short, low-cardinality name of err for the error.type
// attribute: "timeout", "panic", "decode", "deferred", "poison_store",
// "canceled" or "deadline_exceeded" for Herald's and the context's errors,
// otherwise the Go type of the first error in err's chain that is not a
// wrapper (fmt's %w, a Permanent mark, a RetryError), such as
// "*net.OpError"; "" for nil.
func ErrorType(err error) string {
	if err == nil {
		return ""
	}
	var pe *handlers.PanicError
	var de *handlers.DecodeError
	switch {
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.As(err, &pe):
		return "panic"
	case errors.As(err, &de):
		return "decode"
	case IsDeferred(err):
		return "deferred"
	case errors.Is(err, ErrPoisonStore):
		return "poison_store"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	}
	for e := err; e != nil; {
		name := reflect.TypeOf(e).String()
		switch name {
		case "*fmt.wrapError", "*fmt.wrapErrors", "*handlers.permanentError", "*middleware.RetryError":
			if next := errors.Unwrap(e); next != nil {
				e = next
				continue
			}
		}
		return name
	}
	return "_OTHER"
}

// metadataCarrier reads and writes the trace context in message metadata.
// Get falls back to a case-insensitive match, for transports that change the
// case of header names.
type metadataCarrier message.Metadata

func (c metadataCarrier) Get(key string) string {
	if v, ok := c[key]; ok {
		return v
	}
	for k, v := range c {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

func (c metadataCarrier) Set(key, value string) { c[key] = value }

func (c metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// appendTraceFields appends the trace_id and span_id of the span active in
// ctx, if there is one, to fields.
func appendTraceFields(ctx context.Context, fields []zap.Field) []zap.Field {
	if ctx == nil {
		return fields
	}
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return fields
	}
	return append(fields, zap.Stringer("trace_id", sc.TraceID()), zap.Stringer("span_id", sc.SpanID()))
}
