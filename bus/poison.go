package bus

import (
	"context"
	"fmt"
	"iter"
	"maps"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/internal/membroker"
	"github.com/heraldbus/herald/transport"
)

// PoisonQueue lists, shows, replays and purges the poison records of a bus,
// kept by its poison store ([WithPoisonStore]; by default the transport).
type PoisonQueue struct{ b *Bus }

// Poison returns the bus's poison queue.
func (b *Bus) Poison() *PoisonQueue { return &PoisonQueue{b: b} }

// Page returns one page of the records matching q, oldest first, and the
// cursor of the next page (q.After), "" after the last. Each call is one
// bounded request to the store, so that large queues can be paged through.
func (p *PoisonQueue) Page(ctx context.Context, q transport.PoisonQuery) ([]transport.PoisonRecord, string, error) {
	return p.b.cfg.poison.ListPoison(ctx, q)
}

// All iterates over the records matching q (its After and Limit set where the
// iteration starts and the page size), oldest first, a page at a time. It
// stops at the first error, which it yields. Records deleted or replayed
// while it runs are not yielded twice.
func (p *PoisonQueue) All(ctx context.Context, q transport.PoisonQuery) iter.Seq2[transport.PoisonRecord, error] {
	return func(yield func(transport.PoisonRecord, error) bool) {
		for {
			recs, next, err := p.Page(ctx, q)
			if err != nil {
				yield(transport.PoisonRecord{}, err)
				return
			}
			for _, r := range recs {
				if !yield(r, nil) {
					return
				}
			}
			if next == "" {
				return
			}
			q.After = next
		}
	}
}

// List returns every record of handler, or of every handler if handler is "",
// oldest first. It reads the store page by page (see [PoisonQueue.All]).
func (p *PoisonQueue) List(ctx context.Context, handler string) ([]transport.PoisonRecord, error) {
	var out []transport.PoisonRecord
	for r, err := range p.All(ctx, transport.PoisonQuery{Handler: handler}) {
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Get returns the record with id, or an error wrapping [ErrPoisonNotFound].
func (p *PoisonQueue) Get(ctx context.Context, id string) (transport.PoisonRecord, error) {
	rec, ok, err := p.b.cfg.poison.GetPoison(ctx, id)
	if err != nil {
		return transport.PoisonRecord{}, err
	}
	if !ok {
		return transport.PoisonRecord{}, fmt.Errorf("%w: %q", ErrPoisonNotFound, id)
	}
	return rec, nil
}

// Replay delivers the record's event again to the handler that failed it, and
// to no other handler, then deletes the record. The event keeps its ID,
// correlation and causation IDs; attempts start again at 1. If the handler
// fails again, a new record is made. The bus must be started ([ErrNotStarted]).
// When nothing consumes that handler's events (on NATS: it has no consumer;
// in memory: no subscriber), Replay returns an error wrapping [ErrNoHandler]
// and keeps the record, since nothing would keep the event.
//
// The event is published before the record is deleted, so that a crash in
// between loses nothing: two Replays of one record racing may deliver it
// twice (at least once), and the second finds no record to delete, which is
// not an error.
func (p *PoisonQueue) Replay(ctx context.Context, id string) error {
	if err := p.b.checkPublish(ctx); err != nil {
		return err
	}
	rec, err := p.Get(ctx, id)
	if err != nil {
		return err
	}
	return p.replay(ctx, rec)
}

func (p *PoisonQueue) replay(ctx context.Context, rec transport.PoisonRecord) (err error) {
	b := p.b
	if err := b.checkPublish(ctx); err != nil {
		return err
	}
	md := maps.Clone(rec.Metadata)
	if md == nil {
		md = message.Metadata{}
	}
	delete(md, transport.KeyDeliveryCount)
	if rec.Event.ID != "" && rec.Event.Name != "" {
		event.SetMetadata(md, rec.Event)
	}
	ctx, traced := b.startReplay(ctx, rec, md)
	defer func() { traced(err) }()
	if b.local != nil {
		// In process, a replay goes straight into the handler's queue.
		d := &membroker.Delivery{ID: rec.Event.ID, Payload: rec.Payload, Metadata: md}
		if err := b.local.SendTo(ctx, rec.Handler, d); err != nil {
			return fmt.Errorf("herald: replay %q: %w", rec.ID, err)
		}
	} else {
		// The message ID is the record's, so that a transport's dedup window
		// (NATS Nats-Msg-Id) does not swallow the replay of a known event ID.
		msg := message.NewMessage(rec.ID, rec.Payload)
		msg.Metadata = md
		msg.SetContext(ctx)
		if err := b.publisher.Publish(transport.ReplayTopic(rec.Handler), msg); err != nil {
			return fmt.Errorf("herald: replay %q: %w", rec.ID, err)
		}
	}
	if _, err := b.cfg.poison.DeletePoison(ctx, rec.ID); err != nil {
		return fmt.Errorf("herald: replayed %q but could not delete its record (replaying it again delivers it twice): %w", rec.ID, err)
	}
	return nil
}

// ReplayAll replays every record of handler ("" for all handlers), oldest
// first, reading the store a page at a time, and returns how many it replayed
// before the first error.
func (p *PoisonQueue) ReplayAll(ctx context.Context, handler string) (int, error) {
	n := 0
	for r, err := range p.All(ctx, transport.PoisonQuery{Handler: handler}) {
		if err != nil {
			return n, err
		}
		if err := p.replay(ctx, r); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
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
