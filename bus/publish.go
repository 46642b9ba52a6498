package bus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/internal/membroker"
	"github.com/heraldbus/herald/transport"
)

// Publish publishes e to every handler subscribed to its type.
//
// It returns nil only once the transport holds the event: in memory, queued for
// every handler subscribed now; on NATS, stored by the stream (PubAck). It waits
// while a queue is full or for the PubAck, honouring ctx. Errors: ctx's error,
// [ErrNotStarted], [ErrClosed], [ErrInvalidName] (the type's name),
// [ErrInvalidEvent] (cannot be encoded, or decoded, or a nil pointer),
// [ErrEventTooLarge], or the transport's.
//
// If ctx is a handler's context, the new event is a consequence of the one
// being handled: it gets that event's correlation ID, and that event's ID as its
// causation ID. Otherwise its correlation ID is its own ID (or
// [WithCorrelationID]).
//
// In process, handlers receive e itself, not a decoded copy: treat events as
// immutable values (no shared maps or slices that anyone mutates).
//
// A handler that publishes waits like any publisher while a queue is full. On
// the memory transport, handlers that publish to each other in a cycle can fill
// each other's queues and then wait on each other until the bus closes: give
// such publishes a ctx with a deadline (the handler's error then retries them)
// or a larger buffer.
func Publish[E any](ctx context.Context, b *Bus, e E, opts ...PublishOption) error {
	et := typeOf[E]()
	if et.err != nil {
		return et.err
	}
	return b.publish(ctx, et, e, opts)
}

// localEvent is an event on the in-process path: one allocation for the
// transport's delivery and Herald's metadata, shared by every handler (each
// handler's message points to ev).
type localEvent struct {
	d     membroker.Delivery
	ev    event.Shared
	extra message.Metadata
}

func (b *Bus) checkPublish(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	switch b.state.Load() {
	case stateStarted:
		return nil
	case stateNew:
		return ErrNotStarted
	case stateClosing:
		// A handler finishing during Close may publish its consequences.
		if _, ok := handlers.FromContext(ctx); ok {
			return nil
		}
	}
	return ErrClosed
}

// publishable checks a publish of v (the bus's state, the type, the value,
// the options) and prepares its metadata and, when it must be encoded, its
// payload.
func (b *Bus) publishable(ctx context.Context, et *eventType, v any, opts []PublishOption) (handlers.Metadata, []byte, *pubConfig, error) {
	if err := b.checkPublish(ctx); err != nil {
		return handlers.Metadata{}, nil, nil, err
	}
	if b.jsonCodec && et.planErr != nil {
		return handlers.Metadata{}, nil, nil, et.planErr
	}
	if isNilPointer(v) {
		return handlers.Metadata{}, nil, nil, fmt.Errorf("%w: %s: nil pointer", ErrInvalidEvent, et.name)
	}
	pc, err := pubOptions(opts, -1)
	if err != nil {
		return handlers.Metadata{}, nil, nil, err
	}
	meta, payload, err := b.prepare(ctx, et, v, pc)
	return meta, payload, pc, err
}

func (b *Bus) publish(ctx context.Context, et *eventType, v any, opts []PublishOption) error {
	meta, payload, pc, err := b.publishable(ctx, et, v, opts)
	if err != nil {
		return err
	}
	switch {
	case b.obs != nil:
		err = b.publishObserved(ctx, et.name, meta, v, payload, pc)
	case b.local != nil:
		err = b.sendLocal(ctx, et.name, b.localEvent(meta, v, payload, pc))
	default:
		err = b.publisher.Publish(et.name, b.message(ctx, meta, payload, pc))
	}
	if err == nil && b.tracker != nil {
		b.tracker.queued(meta.Event, true)
	}
	return err
}

// sendLocal queues d for every handler of topic. A handler that left while
// the publish waited for room in its queue never got the event: when the bus
// is closing (Close dropped that queue) that is an error, as the event was
// not accepted; when the handler was stopped alone, it is no longer a
// subscriber, and the others got the event.
func (b *Bus) sendLocal(ctx context.Context, topic string, d *membroker.Delivery) error {
	err := b.local.Send(ctx, topic, d)
	if errors.Is(err, membroker.ErrGone) {
		if b.state.Load() >= stateClosing {
			return fmt.Errorf("%w: %w", ErrClosed, err)
		}
		return nil
	}
	return err
}

// isNilPointer reports whether v is a nil pointer (Publish[*E](nil)).
func isNilPointer(v any) bool {
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

// pubOptions applies opts for one event (batch < 0) or for a batch of that
// many events.
func pubOptions(opts []PublishOption, batch int) (*pubConfig, error) {
	if len(opts) == 0 {
		return nil, nil
	}
	pc := &pubConfig{}
	for _, o := range opts {
		if o == nil {
			return nil, invalid("nil publish option")
		}
		if err := o.applyPub(pc); err != nil {
			return nil, err
		}
	}
	switch {
	case batch < 0 && pc.ids != nil:
		return nil, invalid("WithMessageIDs outside PublishBatch: use WithMessageID")
	case batch >= 0 && pc.id != "":
		return nil, invalid("WithMessageID in a batch: every event needs its own ID (WithMessageIDs)")
	case batch >= 0 && pc.ids != nil && len(pc.ids) != batch:
		return nil, invalid("WithMessageIDs has %d IDs for %d events", len(pc.ids), batch)
	}
	return pc, nil
}

// prepare builds an event's metadata and, when it must be encoded, its payload.
func (b *Bus) prepare(ctx context.Context, et *eventType, v any, pc *pubConfig) (handlers.Metadata, []byte, error) {
	meta := handlers.Metadata{Event: transport.Event{Name: et.name, PublishedAt: time.Now()}}
	if pc != nil && pc.id != "" {
		meta.ID = pc.id
	} else {
		meta.ID = event.NewID()
	}
	if parent, ok := handlers.FromContext(ctx); ok {
		meta.CorrelationID = parent.CorrelationID
		if meta.CorrelationID == "" {
			meta.CorrelationID = parent.ID
		}
		meta.CausationID = parent.ID
	} else if pc != nil && pc.correlationID != "" {
		meta.CorrelationID = pc.correlationID
	} else {
		meta.CorrelationID = meta.ID
	}
	if pc != nil {
		meta.OrderingKey = pc.orderingKey
	}

	// Encode only when the event must leave the process, or when its size and
	// encodability cannot be proven from its type and a walk of its value.
	mustEncode := b.local == nil || b.cfg.encodeAlways || !b.jsonCodec
	if !mustEncode {
		n, ok := et.plan.Bound(v)
		mustEncode = !ok || n > b.cfg.maxEventSize
	}
	if !mustEncode {
		return meta, nil, nil
	}
	payload, err := b.encode(et, v)
	return meta, payload, err
}

// encode encodes v with the codec, within the maximum event size.
func (b *Bus) encode(et *eventType, v any) ([]byte, error) {
	payload, err := b.cfg.codec.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidEvent, et.name, err)
	}
	if len(payload) > b.cfg.maxEventSize {
		return nil, fmt.Errorf("%w: %s is %d bytes encoded, the limit is %d", ErrEventTooLarge, et.name, len(payload), b.cfg.maxEventSize)
	}
	return payload, nil
}

func (b *Bus) localEvent(meta handlers.Metadata, v any, payload []byte, pc *pubConfig) *membroker.Delivery {
	le := &localEvent{ev: event.Shared{Event: meta.Event}}
	le.d.ID = meta.ID
	le.d.Payload = payload
	le.d.Value = le
	if !b.cfg.encodeAlways {
		le.ev.Value = v
	}
	if pc != nil && len(pc.metadata) > 0 {
		le.extra = pc.metadata
	}
	return &le.d
}

func (b *Bus) message(ctx context.Context, meta handlers.Metadata, payload []byte, pc *pubConfig) *message.Message {
	msg := message.NewMessage(meta.ID, payload)
	if pc != nil {
		maps.Copy(msg.Metadata, pc.metadata)
	}
	event.SetMetadata(msg.Metadata, meta.Event)
	if !b.jsonCodec {
		msg.Metadata[transport.KeyContentType] = b.cfg.codec.ContentType()
	}
	msg.SetContext(ctx)
	return msg
}

// PublishBatch publishes events, in order, as [Publish] would publish each, but
// lets the transport pipeline them: over NATS every event is sent before any
// acknowledgement is awaited. It returns nil only once the transport holds every
// event; on an error some events may be held already (publishing the batch
// again delivers those twice, unless the transport deduplicates by ID).
// [WithMessageID] cannot be used in a batch ([ErrInvalidOption]): give each
// event its ID with [WithMessageIDs]; every other option applies to every
// event.
func PublishBatch[E any](ctx context.Context, b *Bus, events []E, opts ...PublishOption) (err error) {
	et := typeOf[E]()
	if et.err != nil {
		return et.err
	}
	if err := b.checkPublish(ctx); err != nil {
		return err
	}
	if b.jsonCodec && et.planErr != nil {
		return et.planErr
	}
	pc, err := pubOptions(opts, len(events))
	if err != nil {
		return err
	}
	var ids []string
	if pc != nil {
		ids = pc.ids
	}
	if b.obs != nil {
		var done func(error)
		ctx, pc, done = b.observeBatch(ctx, et.name, len(events), pc)
		defer func() { done(err) }()
	}
	if b.local != nil {
		for i := range events {
			v := any(events[i])
			if isNilPointer(v) {
				return fmt.Errorf("%w: %s: event %d: nil pointer", ErrInvalidEvent, et.name, i)
			}
			if ids != nil {
				pc.id = ids[i]
			}
			meta, payload, err := b.prepare(ctx, et, v, pc)
			if err != nil {
				return fmt.Errorf("event %d: %w", i, err)
			}
			if err := b.sendLocal(ctx, et.name, b.localEvent(meta, v, payload, pc)); err != nil {
				return err
			}
			if b.tracker != nil {
				b.tracker.queued(meta.Event, true)
			}
		}
		return nil
	}
	msgs := make([]*message.Message, len(events))
	for i := range events {
		if isNilPointer(events[i]) {
			return fmt.Errorf("%w: %s: event %d: nil pointer", ErrInvalidEvent, et.name, i)
		}
		if ids != nil {
			pc.id = ids[i]
		}
		meta, payload, err := b.prepare(ctx, et, events[i], pc)
		if err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
		msgs[i] = b.message(ctx, meta, payload, pc)
	}
	if bp, ok := b.cfg.transport.(transport.BatchPublisher); ok {
		err = bp.PublishBatch(ctx, et.name, msgs)
	} else {
		err = b.publisher.Publish(et.name, msgs...)
	}
	if err == nil && b.tracker != nil {
		for _, m := range msgs {
			ev, _ := event.ParseMetadata(m.Metadata)
			b.tracker.queued(ev, true)
		}
	}
	return err
}
