package bus

import (
	"context"
	"maps"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/internal/membroker"
)

// The in-process path: workers take items from the handler's queue in the
// memory broker and hand the typed value to the chain without decoding.

func (s *Subscription) startLocal() error {
	q, err := s.b.local.Join(s.name, s.event)
	if err != nil {
		return err
	}
	s.release = append(s.release, func() {
		s.left = q.Len()
		q.Leave()
	})
	if s.cfg.keyOrdered && s.cfg.concurrency > 1 {
		s.startKeyedLocal(q)
		return nil
	}
	for range s.cfg.concurrency {
		var loop func()
		loop = func() { s.runLocal(q, loop) }
		s.goWorker(loop)
	}
	return nil
}

// binding is what every in-process delivery to the handler name shares.
func binding(ctx context.Context, name string, codec handlers.Codec) *event.Binding {
	return &event.Binding{Parent: ctx, Handler: name, Codec: codec}
}

// runLocal is one worker. Replays arrive on the same queue (SendTo).
func (s *Subscription) runLocal(q *membroker.Queue, again func()) {
	for {
		it, ok := s.nextLocal(q)
		if !ok {
			return
		}
		s.handleLocal(q, it, again)
	}
}

// nextLocal takes the next item; once the subscription stops, it drains what
// is queued (and nacked items as they fall due) until abort.
func (s *Subscription) nextLocal(q *membroker.Queue) (membroker.Item, bool) {
	select {
	case <-s.stop:
		return s.drainLocal(q)
	default:
	}
	if it, ok := q.Next(s.stop); ok {
		return it, true
	}
	select {
	case <-s.stop:
		return s.drainLocal(q)
	default:
		return membroker.Item{}, false // the broker closed
	}
}

// drainPoll is how often a draining worker looks again for nacked events
// falling due.
const drainPoll = 20 * time.Millisecond

func (s *Subscription) drainLocal(q *membroker.Queue) (membroker.Item, bool) {
	for {
		select {
		case <-s.abort:
			return membroker.Item{}, false
		default:
		}
		if it, ok := q.TryNext(); ok {
			return it, true
		}
		if q.Len() == 0 {
			return membroker.Item{}, false
		}
		t := time.NewTimer(drainPoll)
		select {
		case <-t.C:
		case <-s.abort:
		case <-q.Done():
			t.Stop()
			return membroker.Item{}, false
		}
	}
}

func (s *Subscription) handleLocal(q *membroker.Queue, it membroker.Item, again func()) {
	var msg *message.Message
	if le, ok := it.Value.(*localEvent); ok {
		attempt := 1 + it.Redeliveries
		md := le.extra // Herald's own chain only reads it: every handler shares the event's (nil when none)
		if s.userMW {
			// The user's middleware may write the message's Metadata: each
			// delivery gets a copy of its own (an empty map when none).
			md = maps.Clone(le.extra)
			if md == nil {
				md = make(message.Metadata, 2)
			}
		}
		// The event's metadata and value are shared, not copied: writes go
		// to a copy of the delivery's own (event.MessageMetadata).
		msg = event.NewDelivery(s.bind, &le.ev, attempt, attempt, le.d.Payload, md)
	} else {
		// Published through the watermill publisher, or a replay: decode.
		msg = &message.Message{UUID: it.ID, Payload: it.Payload, Metadata: maps.Clone(it.Metadata)}
		if msg.Metadata == nil {
			msg.Metadata = message.Metadata{}
		}
		msg.SetContext(s.ctx)
		event.Bind(msg, s.name, 1+it.Redeliveries)
		event.SetDeliveries(msg, 1+it.Redeliveries)
	}
	s.process(msg, func(failed bool, delay time.Duration) {
		if failed {
			q.Nack(it, delay) // 0: the broker's doubling delay
		}
	}, again)
}
