package bus

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/transport"
)

// Encode builds the message [Publish] would hand the transport for e, without
// publishing it: its topic (the event's name) and a message whose UUID is the
// event ID, whose payload is e encoded by the bus's codec, and whose metadata
// carries the IDs, the correlation and causation IDs taken from ctx (as
// Publish takes them), the publish options' metadata and ordering key, and
// the trace context when the bus traces. Publishing the message later on the
// bus's transport (its Publisher, topic as the topic) delivers e exactly as
// Publish would have; it is how the outbox stores an event to publish once a
// transaction commits.
//
// The payload is always encoded, even on the memory transport. Encode does
// not need the bus to be started, and is safe for concurrent use. The
// message's context is context.Background(): the caller sets its own when it
// publishes. Errors: those of
// Publish that do not come from publishing ([ErrInvalidName],
// [ErrInvalidEvent], [ErrEventTooLarge], [ErrInvalidOption]).
func Encode[E any](ctx context.Context, b *Bus, e E, opts ...PublishOption) (topic string, msg *message.Message, err error) {
	et := typeOf[E]()
	if et.err != nil {
		return "", nil, et.err
	}
	if b.jsonCodec && et.planErr != nil {
		return "", nil, et.planErr
	}
	v := any(e)
	if isNilPointer(v) {
		return "", nil, fmt.Errorf("%w: %s: nil pointer", ErrInvalidEvent, et.name)
	}
	pc, err := pubOptions(opts, -1)
	if err != nil {
		return "", nil, err
	}
	if b.obs != nil && b.obs.tracing != nil {
		pc = b.traceMetadata(ctx, pc)
	}
	meta, payload, err := b.prepare(ctx, et, v, pc)
	if err != nil {
		return "", nil, err
	}
	if payload == nil {
		if payload, err = b.cfg.codec.Marshal(v); err != nil {
			return "", nil, fmt.Errorf("%w: %s: %w", ErrInvalidEvent, et.name, err)
		}
		if len(payload) > b.cfg.maxEventSize {
			return "", nil, fmt.Errorf("%w: %s is %d bytes encoded, the limit is %d", ErrEventTooLarge, et.name, len(payload), b.cfg.maxEventSize)
		}
	}
	msg = b.message(context.Background(), meta, payload, pc)
	return et.name, msg, nil
}

// TransportOf returns the transport b publishes to and consumes from (the
// one given with [WithTransport], or the default memory transport). The bus
// owns it: callers may publish through its Publisher, never close it.
func TransportOf(b *Bus) transport.Transport { return b.cfg.transport }
