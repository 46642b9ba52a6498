package bus

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/adapters/memory"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/middleware"
)

// PoisonRecord is an event a handler failed to process: see
// [middleware.PoisonRecord].
type PoisonRecord = middleware.PoisonRecord

// PoisonQueue lists, shows, replays and purges the poison records of a bus.
type PoisonQueue struct{ b *Bus }

// Poison returns the bus's poison queue.
func (b *Bus) Poison() *PoisonQueue { return &PoisonQueue{b: b} }

// List returns the records of handler, or of every handler if handler is "",
// oldest first.
func (p *PoisonQueue) List(ctx context.Context, handler string) ([]PoisonRecord, error) {
	return p.b.cfg.poison.ListPoison(ctx, handler)
}

// Get returns the record with id, or an error wrapping [ErrPoisonNotFound].
func (p *PoisonQueue) Get(ctx context.Context, id string) (PoisonRecord, error) {
	rec, ok, err := p.b.cfg.poison.GetPoison(ctx, id)
	if err != nil {
		return PoisonRecord{}, err
	}
	if !ok {
		return PoisonRecord{}, fmt.Errorf("%w: %q", ErrPoisonNotFound, id)
	}
	return rec, nil
}

// Replay delivers the record's event again to the handler that failed it, and
// to no other handler, then deletes the record. The event keeps its ID,
// correlation and causation IDs; attempts start again at 1. If the handler
// fails again, a new record is made. The bus must be started ([ErrNotStarted]);
// on the memory transport a handler of that name must be subscribed
// ([ErrNoHandler]), since nothing would keep the event otherwise. If deleting
// the record fails after the event was published, the error says so and the
// record stays: replaying it again delivers the event twice.
func (p *PoisonQueue) Replay(ctx context.Context, id string) error {
	b := p.b
	if err := b.checkPublish(ctx); err != nil {
		return err
	}
	rec, err := p.Get(ctx, id)
	if err != nil {
		return err
	}
	md := maps.Clone(rec.Metadata)
	if md == nil {
		md = message.Metadata{}
	}
	handlers.SetMetadata(md, rec.Event)
	if b.local != nil {
		// In process, a replay goes straight into the handler's queue.
		d := &memory.Delivery{ID: rec.Event.ID, Payload: rec.Payload, Metadata: md}
		if err := b.local.SendTo(ctx, rec.Handler, rec.Event.Name, d); err != nil {
			if errors.Is(err, memory.ErrNoGroup) {
				return fmt.Errorf("%w: %q (subscribe it, then replay)", ErrNoHandler, rec.Handler)
			}
			return b.mapErr(err)
		}
	} else {
		// The message ID is the record's, so that a transport's dedup window
		// (NATS Nats-Msg-Id) does not swallow the replay of a known event ID.
		msg := message.NewMessage(rec.ID, rec.Payload)
		msg.Metadata = md
		msg.SetContext(ctx)
		if err := b.publisher.Publish(replayTopic(rec.Handler), msg); err != nil {
			return b.mapErr(err)
		}
	}
	if _, err := b.cfg.poison.DeletePoison(ctx, id); err != nil {
		return fmt.Errorf("herald: replayed %q but could not delete its record: %w", id, err)
	}
	return nil
}

// ReplayAll replays every record of handler ("" for all handlers), oldest
// first, and returns how many it replayed before the first error.
func (p *PoisonQueue) ReplayAll(ctx context.Context, handler string) (int, error) {
	recs, err := p.List(ctx, handler)
	if err != nil {
		return 0, err
	}
	for i, r := range recs {
		if err := p.Replay(ctx, r.ID); err != nil {
			return i, err
		}
	}
	return len(recs), nil
}

// Purge deletes the record with id, or returns an error wrapping
// [ErrPoisonNotFound].
func (p *PoisonQueue) Purge(ctx context.Context, id string) error {
	ok, err := p.b.cfg.poison.DeletePoison(ctx, id)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: %q", ErrPoisonNotFound, id)
	}
	return nil
}
