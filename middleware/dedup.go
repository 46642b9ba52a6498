package middleware

import (
	"container/list"
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/internal/event"
)

// DedupStore remembers which (handler, event ID) keys completed, and which are
// being handled right now. Implementations must be safe for concurrent use; a
// store shared by replicas (Redis) makes deduplication work across processes.
type DedupStore interface {
	// Begin reports whether key completed (done) and, if not, tries to claim
	// it for lease, returning a token that identifies the claim; token is ""
	// when another holder's claim is live.
	Begin(ctx context.Context, key string, lease time.Duration) (done bool, token string, err error)
	// Finish marks key completed for ttl, replacing any claim.
	Finish(ctx context.Context, key string, ttl time.Duration) error
	// Abandon drops the claim on key if it is still the one token names, so
	// that a redelivery can claim the key; it never drops a done mark or
	// another holder's claim.
	Abandon(ctx context.Context, key, token string) error
}

// DedupLease bounds how long a claim blocks the other replicas if its holder
// dies mid-handling: min(ttl, DedupLease).
const DedupLease = time.Minute

// ErrDuplicateInFlight (wrapped, with [ErrDeferred]) is returned for a delivery
// whose event another replica is handling right now; it is redelivered later
// and then skipped if that replica succeeded.
var ErrDuplicateInFlight = errors.New("herald: event is being handled by another replica")

// Dedup skips a delivery whose event ID this handler already completed within
// ttl: it is acknowledged without calling the handler. Keys are
// "<handler>/<event ID>". Before the handler runs, the key is claimed; a
// delivery of an event another replica is handling is deferred (nacked,
// redelivered later). After success the key is marked done for ttl; after a
// failure the claim is dropped.
//
// A claim lasts min(ttl, [DedupLease]) and is not renewed: an attempt that runs
// longer may see a redelivery of its event run beside it.
//
// Guarantee: a duplicate, never a loss. If the process dies between the
// handler's success and the mark, or the mark fails (logged at Warn, the
// delivery is still acknowledged), a redelivery runs the handler again (after
// the claim's lease, at most [DedupLease], if the process died). If the store
// cannot be read, the handler runs anyway.
//
// Place it inside Poison and outside Retry (bus.WithDedup does): a poisoned
// event is not marked done, so its replay runs.
func Dedup(store DedupStore, ttl time.Duration, logger *zap.Logger) message.HandlerMiddleware {
	if logger == nil {
		logger = zap.NewNop()
	}
	lease := min(ttl, DedupLease)
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			m, ok := event.Metadata(msg)
			if !ok || m.ID == "" {
				return h(msg)
			}
			meta := &m
			key := meta.Handler + "/" + meta.ID
			ctx := msg.Context()
			done, token, err := store.Begin(ctx, key, lease)
			claimed := token != ""
			switch {
			case err != nil:
				logger.Warn("dedup store unreadable; handling the event anyway",
					deliveryFields(ctx, meta, zap.Error(err))...)
			case done:
				logger.Debug("duplicate event skipped", deliveryFields(ctx, meta)...)
				return nil, nil
			case !claimed:
				return nil, Defer(ErrDuplicateInFlight)
			}
			out, err := h(msg)
			if err != nil {
				if claimed {
					_ = store.Abandon(context.WithoutCancel(ctx), key, token)
				}
				return out, err
			}
			if merr := store.Finish(context.WithoutCancel(ctx), key, ttl); merr != nil {
				logger.Warn("cannot mark event done; a redelivery would run the handler again",
					deliveryFields(ctx, meta, zap.Error(merr))...)
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
	seq   uint64
}

type dedupEntry struct {
	key     string
	done    bool   // false: a claim
	token   string // the claim's holder
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

// Begin implements DedupStore.
func (m *MemoryDedup) Begin(_ context.Context, key string, lease time.Duration) (done bool, token string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if el, ok := m.keys[key]; ok {
		e := el.Value.(*dedupEntry)
		if now.Before(e.expires) {
			return e.done, "", nil
		}
		m.order.Remove(el)
		delete(m.keys, key)
	}
	m.seq++
	token = strconv.FormatUint(m.seq, 10)
	m.put(key, false, token, now.Add(lease))
	return false, token, nil
}

// Finish implements DedupStore.
func (m *MemoryDedup) Finish(_ context.Context, key string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.keys[key]; ok {
		m.order.Remove(el)
		delete(m.keys, key)
	}
	m.put(key, true, "", m.now().Add(ttl))
	return nil
}

// Abandon implements DedupStore.
func (m *MemoryDedup) Abandon(_ context.Context, key, token string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.keys[key]; ok {
		if e := el.Value.(*dedupEntry); !e.done && e.token == token {
			m.order.Remove(el)
			delete(m.keys, key)
		}
	}
	return nil
}

func (m *MemoryDedup) put(key string, done bool, token string, exp time.Time) {
	m.keys[key] = m.order.PushBack(&dedupEntry{key: key, done: done, token: token, expires: exp})
	for m.order.Len() > m.max {
		oldest := m.order.Front()
		m.order.Remove(oldest)
		delete(m.keys, oldest.Value.(*dedupEntry).key)
	}
}

// Len returns the number of keys held.
func (m *MemoryDedup) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.order.Len()
}
