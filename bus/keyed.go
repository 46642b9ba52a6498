package bus

import (
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/internal/membroker"
	"github.com/heraldbus/herald/transport"
)

// Ordering by key: one dispatcher goroutine reads the handler's queue and hands
// each event to worker hash(key) mod N, so a key's events run in order on one
// worker while other keys run in parallel. A worker's inbox is small; when it
// is full the dispatcher waits (bounded memory, head-of-line blocking only
// behind a busy key's worker).
const keyedInbox = 8

func localKey(it membroker.Item) string {
	if le, ok := it.Value.(*localEvent); ok {
		if le.ev.Event.OrderingKey != "" {
			return le.ev.Event.OrderingKey
		}
		return le.ev.Event.ID
	}
	if k := it.Metadata[transport.KeyOrderingKey]; k != "" {
		return k
	}
	return it.ID
}

// keyed describes one source of events for the keyed dispatcher.
type keyed[T any] struct {
	next     func() (T, bool) // the next item in the source's order; false: stop
	key      func(T) string   // its ordering key
	handle   func(it T, again func())
	giveBack func(T)         // return an item that was taken but not started
	quit     <-chan struct{} // closed: stop handing out and give back
}

// startKeyed starts n workers, each with a small inbox, and a dispatcher that
// hands each item to the worker of its key.
func startKeyed[T any](s *Subscription, k keyed[T]) {
	n := s.cfg.concurrency
	inboxes := make([]chan T, n)
	for i := range inboxes {
		inboxes[i] = make(chan T, keyedInbox)
		inbox := inboxes[i]
		var loop func()
		loop = func() {
			for it := range inbox {
				select {
				case <-k.quit:
					k.giveBack(it)
					continue
				default:
				}
				k.handle(it, loop)
			}
		}
		s.goWorker(loop)
	}
	s.wg.Go(func() {
		defer func() {
			for _, in := range inboxes {
				close(in)
			}
		}()
		for {
			it, ok := k.next()
			if !ok {
				return
			}
			select {
			case inboxes[transport.KeyPartition(k.key(it), n)] <- it:
			case <-k.quit:
				k.giveBack(it)
				return
			}
		}
	})
}

func (s *Subscription) startKeyedLocal(q *membroker.Queue) {
	startKeyed(s, keyed[membroker.Item]{
		next:     func() (membroker.Item, bool) { return s.nextLocal(q) },
		key:      localKey,
		handle:   func(it membroker.Item, again func()) { s.handleLocal(q, it, again) },
		giveBack: q.Requeue,
		quit:     s.abort, // memory drains what is queued after stop
	})
}

func (s *Subscription) startKeyedRemote(events, replays <-chan *message.Message) {
	startKeyed(s, keyed[*message.Message]{
		next: func() (*message.Message, bool) { return s.nextRemote(&events, &replays) },
		key: func(msg *message.Message) string {
			if key := msg.Metadata.Get(transport.KeyOrderingKey); key != "" {
				return key
			}
			return msg.UUID
		},
		handle:   s.handleRemote,
		giveBack: func(msg *message.Message) { msg.Nack() }, // the transport redelivers it
		quit:     s.stop,
	})
}
