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

func localKey(it membroker.Item) string {
	if le, ok := it.Value.(*localEvent); ok {
		if le.meta.OrderingKey != "" {
			return le.meta.OrderingKey
		}
		return le.meta.ID
	}
	if k := it.Metadata[transport.KeyOrderingKey]; k != "" {
		return k
	}
	return it.ID
}

func (s *Subscription) startKeyedLocal(q *membroker.Queue) {
	n := s.cfg.concurrency
	inboxes := make([]chan membroker.Item, n)
	for i := range inboxes {
		inboxes[i] = make(chan membroker.Item, keyedInbox)
		inbox := inboxes[i]
		var loop func()
		loop = func() {
			for it := range inbox {
				select {
				case <-s.abort:
					q.Requeue(it) // not started: give it back
					continue
				default:
				}
				s.handleLocal(q, it, loop)
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
			it, ok := s.nextLocal(q)
			if !ok {
				return
			}
			select {
			case inboxes[keyIndex(localKey(it), n)] <- it:
			case <-s.abort:
				q.Requeue(it)
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
		var loop func()
		loop = func() {
			for msg := range inbox {
				select {
				case <-s.stop:
					msg.Nack() // not started: the transport redelivers it
					continue
				default:
				}
				s.handleRemote(msg, loop)
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
			msg, ok := s.nextRemote(&events, &replays)
			if !ok {
				return
			}
			key := msg.Metadata.Get(transport.KeyOrderingKey)
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
