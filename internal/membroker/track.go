package membroker

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/heraldbus/herald/transport"
)

// TrackMap is a transport.DeliveryStore in process memory. Records are kept
// in two generations: puts go to the current one, and every ttl the current
// one becomes the previous one and the previous one is dropped. A record
// (moved to the current generation by each put) so lives at least ttl after
// its last put and is gone by twice that (or, when puts are rare, at the
// next read or the 64th put after), and the map holds only what was put
// within the last two ttls, without a goroutine and at the cost of a map
// update per put.
type TrackMap struct {
	ttl time.Duration
	now func() time.Time

	mu        sync.Mutex
	cur, prev map[string][]transport.Delivery // event ID → its records, one per handler
	rotated   time.Time                       // when cur became current
	puts      uint                            // PutDelivery reads the clock every putsPerCheck puts
}

// putsPerCheck is how many puts share one look at the clock: reading it is
// a good part of a put's cost. Reads look at it every time.
const putsPerCheck = 64

var _ transport.DeliveryStore = (*TrackMap)(nil)

// NewTrackMap returns an empty store whose records live ttl (to 2×ttl) after
// their last put. now is the clock (nil: time.Now).
func NewTrackMap(ttl time.Duration, now func() time.Time) *TrackMap {
	if now == nil {
		now = time.Now
	}
	return &TrackMap{ttl: ttl, now: now, cur: map[string][]transport.Delivery{}, rotated: now()}
}

// rotate starts a new generation when the current one is ttl old.
func (m *TrackMap) rotate() {
	now := m.now()
	age := now.Sub(m.rotated)
	if age < m.ttl {
		return
	}
	if age < 2*m.ttl {
		m.prev = m.cur
	} else {
		m.prev = nil // the current generation is older than ttl too
	}
	m.cur = make(map[string][]transport.Delivery, len(m.prev))
	m.rotated = now
}

// PutDelivery merges d into the record of (d.EventID, d.Handler).
func (m *TrackMap) PutDelivery(ctx context.Context, d transport.Delivery) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.puts%putsPerCheck == 0 {
		m.rotate()
	}
	m.puts++
	ds, ok := m.cur[d.EventID]
	if !ok {
		if ds, ok = m.prev[d.EventID]; ok {
			delete(m.prev, d.EventID)
		}
	}
	for i := range ds {
		if ds[i].Handler == d.Handler {
			ds[i] = ds[i].Merge(d)
			m.cur[d.EventID] = ds
			return nil
		}
	}
	m.cur[d.EventID] = append(ds, d)
	return nil
}

// Deliveries returns the records of eventID, sorted by handler name.
func (m *TrackMap) Deliveries(ctx context.Context, eventID string) ([]transport.Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.rotate()
	ds, ok := m.cur[eventID]
	if !ok {
		ds = m.prev[eventID]
	}
	out := slices.Clone(ds)
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b transport.Delivery) int { return strings.Compare(a.Handler, b.Handler) })
	return out, nil
}

// Len returns the number of events the map holds records of.
func (m *TrackMap) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rotate()
	return len(m.cur) + len(m.prev)
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
