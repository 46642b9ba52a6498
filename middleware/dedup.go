package middleware

import (
	"container/list"
	"context"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/handlers"
)

// DedupStore remembers which (handler, event ID) keys completed. Implementations
// must be safe for concurrent use; a store shared by replicas (Redis) makes
// deduplication work across processes.
type DedupStore interface {
	// Done reports whether key was marked within its TTL.
	Done(ctx context.Context, key string) (bool, error)
	// MarkDone records key for ttl.
	MarkDone(ctx context.Context, key string, ttl time.Duration) error
}

// Dedup skips a delivery whose event ID this handler already completed within
// ttl: it is acknowledged without calling the handler. After the handler
// succeeds, the key "<handler>/<event ID>" is marked done in store.
//
// Guarantee: a duplicate, never a loss. If the process dies between the
// handler's success and the mark, or the mark fails (logged at Warn, the
// delivery is still acknowledged), a redelivery runs the handler again. If the
// store cannot be read, the handler runs (a possible duplicate) rather than the
// event being dropped.
//
// Place it inside Poison and outside Retry (bus.WithDedup does): a poisoned
// event is not marked done, so its replay runs.
func Dedup(store DedupStore, ttl time.Duration, logger *zap.Logger) message.HandlerMiddleware {
	if logger == nil {
		logger = zap.NewNop()
	}
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			meta := handlers.MessageMetadata(msg)
			if meta == nil || meta.ID == "" {
				return h(msg)
			}
			key := meta.Handler + "/" + meta.ID
			ctx := msg.Context()
			done, err := store.Done(ctx, key)
			if err != nil {
				logger.Warn("dedup store unreadable; handling the event anyway",
					deliveryFields(meta, zap.Error(err))...)
			} else if done {
				logger.Debug("duplicate event skipped", deliveryFields(meta)...)
				return nil, nil
			}
			out, err := h(msg)
			if err != nil {
				return out, err
			}
			if merr := store.MarkDone(ctx, key, ttl); merr != nil {
				logger.Warn("cannot mark event done; a redelivery would run the handler again",
					deliveryFields(meta, zap.Error(merr))...)
			}
			return out, nil
		}
	}
}

// MemoryDedup is an in-process [DedupStore]: at most max keys (the oldest are
// forgotten first), each for its TTL. The zero value is not usable: call
// [NewMemoryDedup].
type MemoryDedup struct {
	mu    sync.Mutex
	max   int
	keys  map[string]*list.Element
	order *list.List // front: oldest
	now   func() time.Time
}

type dedupEntry struct {
	key     string
	expires time.Time
}

// NewMemoryDedup returns a store that keeps at most max keys (max <= 0 means
// 100,000).
func NewMemoryDedup(max int) *MemoryDedup {
	if max <= 0 {
		max = 100_000
	}
	return &MemoryDedup{max: max, keys: map[string]*list.Element{}, order: list.New(), now: time.Now}
}

// Done implements DedupStore.
func (m *MemoryDedup) Done(_ context.Context, key string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.keys[key]
	if !ok {
		return false, nil
	}
	if m.now().After(el.Value.(*dedupEntry).expires) {
		m.order.Remove(el)
		delete(m.keys, key)
		return false, nil
	}
	return true, nil
}

// MarkDone implements DedupStore.
func (m *MemoryDedup) MarkDone(_ context.Context, key string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	exp := m.now().Add(ttl)
	if el, ok := m.keys[key]; ok {
		el.Value.(*dedupEntry).expires = exp
		m.order.MoveToBack(el)
		return nil
	}
	m.keys[key] = m.order.PushBack(&dedupEntry{key: key, expires: exp})
	for m.order.Len() > m.max {
		oldest := m.order.Front()
		m.order.Remove(oldest)
		delete(m.keys, oldest.Value.(*dedupEntry).key)
	}
	return nil
}

// Len returns the number of keys held.
func (m *MemoryDedup) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.order.Len()
}
