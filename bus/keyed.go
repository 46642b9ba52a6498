package bus

import (
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/adapters/memory"
	"github.com/heraldbus/herald/handlers"
)

// Ordering by key: one dispatcher goroutine reads the handler's queue and hands
// each event to worker hash(key) mod N, so a key's events run in order on one
// worker while other keys run in parallel. A worker's inbox is small; when it
// is full the dispatcher waits (bounded memory, head-of-line blocking only
// behind a busy key's worker).
const keyedInbox = 8

// keyIndex is FNV-1a written out: hash/fnv would allocate a hasher and a
// []byte copy of the key per event.
func keyIndex(key string, n int) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}

func localKey(it memory.Item) string {
	if le, ok := it.Value.(*localEvent); ok {
		if le.meta.OrderingKey != "" {
			return le.meta.OrderingKey
		}
		return le.meta.ID
	}
	if k := it.Metadata[handlers.KeyOrderingKey]; k != "" {
		return k
	}
	return it.ID
}

func (s *Subscription) startKeyedLocal(events *memory.Queue) {
	n := s.cfg.concurrency
	inboxes := make([]chan memory.Item, n)
	for i := range inboxes {
		inboxes[i] = make(chan memory.Item, keyedInbox)
		inbox := inboxes[i]
		s.wg.Go(func() {
			for it := range inbox {
				select {
				case <-s.stop:
					events.Nack(it) // not started: give it back (Nack never blocks)
					continue
				default:
				}
				s.handleLocal(events, it)
			}
		})
	}
	s.wg.Go(func() {
		defer func() {
			for _, in := range inboxes {
				close(in)
			}
		}()
		for {
			var it memory.Item
			select {
			case it = <-events.C():
			case <-s.stop:
				return
			case <-events.Done():
				return
			}
			select {
			case inboxes[keyIndex(localKey(it), n)] <- it:
			case <-s.stop:
				events.Nack(it)
				return
			}
		}
	})
}

func (s *Subscription) startKeyedRemote(events, replays <-chan *message.Message) {
	n := s.cfg.concurrency
	inboxes := make([]chan *message.Message, n)
	for i := range inboxes {
		inboxes[i] = make(chan *message.Message, keyedInbox)
		inbox := inboxes[i]
		s.wg.Go(func() {
			for msg := range inbox {
				select {
				case <-s.stop:
					msg.Nack() // not started: the transport redelivers it
					continue
				default:
				}
				s.handleRemote(msg)
			}
		})
	}
	s.wg.Go(func() {
		defer func() {
			for _, in := range inboxes {
				close(in)
			}
		}()
		for {
			msg, ok := s.nextRemote(&events, &replays)
			if !ok {
				return
			}
			key := msg.Metadata.Get(handlers.KeyOrderingKey)
			if key == "" {
				key = msg.UUID
			}
			select {
			case inboxes[keyIndex(key, n)] <- msg:
			case <-s.stop:
				msg.Nack()
				return
			}
		}
	})
}
