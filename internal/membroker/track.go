package membroker

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/heraldbus/herald/transport"
)

// TrackMap is a transport.DeliveryStore in process memory. An event's records
// are removed once ttl has passed since the last put of any of them: each put
// queues the event's new expiry, and every call first drops the events whose
// expiry passed, so the map holds only what was put within the last ttl,
// without a goroutine.
type TrackMap struct {
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	events  map[string]*trackEntry
	expiry  []trackExpiry // in put order, so by expiry: the oldest first
	expired int           // expiry[:expired] are consumed (compacted lazily)
}

type trackEntry struct {
	expires  time.Time
	handlers map[string]transport.Delivery
}

type trackExpiry struct {
	at    time.Time
	event string
}

var _ transport.DeliveryStore = (*TrackMap)(nil)

// NewTrackMap returns an empty store whose records live ttl after their last
// put. now is the clock (nil: time.Now).
func NewTrackMap(ttl time.Duration, now func() time.Time) *TrackMap {
	if now == nil {
		now = time.Now
	}
	return &TrackMap{ttl: ttl, now: now, events: map[string]*trackEntry{}}
}

// PutDelivery merges d into the record of (d.EventID, d.Handler).
func (m *TrackMap) PutDelivery(ctx context.Context, d transport.Delivery) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
	e := m.events[d.EventID]
	if e == nil {
		e = &trackEntry{handlers: make(map[string]transport.Delivery, 1)}
		m.events[d.EventID] = e
	}
	if old, ok := e.handlers[d.Handler]; ok {
		d = old.Merge(d)
	}
	e.handlers[d.Handler] = d
	e.expires = now.Add(m.ttl)
	m.expiry = append(m.expiry, trackExpiry{at: e.expires, event: d.EventID})
	return nil
}

// Deliveries returns the records of eventID, sorted by handler name.
func (m *TrackMap) Deliveries(ctx context.Context, eventID string) ([]transport.Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(m.now())
	e := m.events[eventID]
	if e == nil {
		return nil, nil
	}
	out := make([]transport.Delivery, 0, len(e.handlers))
	for _, d := range e.handlers {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b transport.Delivery) int { return strings.Compare(a.Handler, b.Handler) })
	return out, nil
}

// Len returns the number of events the map holds records of.
func (m *TrackMap) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(m.now())
	return len(m.events)
}

// sweep drops the events whose last put is older than ttl. An expiry queued
// by an earlier put of an event put again since is skipped: the later one is
// further in the queue.
func (m *TrackMap) sweep(now time.Time) {
	for m.expired < len(m.expiry) {
		x := m.expiry[m.expired]
		if x.at.After(now) {
			break
		}
		if e := m.events[x.event]; e != nil && !e.expires.After(now) {
			delete(m.events, x.event)
		}
		m.expiry[m.expired] = trackExpiry{}
		m.expired++
	}
	if m.expired > 1024 && m.expired*2 > len(m.expiry) {
		m.expiry = append(m.expiry[:0], m.expiry[m.expired:]...)
		m.expired = 0
	}
}

// GroupsOf returns the names of the groups subscribed to topic.
func (h *Handle) GroupsOf(topic string) []string {
	h.b.mu.RLock()
	defer h.b.mu.RUnlock()
	r := h.b.routes[topic]
	if r == nil {
		return nil
	}
	out := make([]string, len(r.groups))
	for i, g := range r.groups {
		out[i] = g.key.group
	}
	return out
}

// DeliveryStore returns the broker's tracking store, made with ttl by the
// first call (later calls get the same store, whatever their ttl).
func (h *Handle) DeliveryStore(ttl time.Duration) *TrackMap {
	h.b.mu.Lock()
	defer h.b.mu.Unlock()
	if h.b.track == nil {
		h.b.track = NewTrackMap(ttl, nil)
	}
	return h.b.track
}
