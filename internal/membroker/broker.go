// Package membroker is the in-process broker behind adapters/memory: bounded
// FIFO queues per (handler name, topic) with consumer-group semantics, nacked
// events redelivered after a delay, and a poison record map. The bus reaches a
// memory transport's broker through [HandleOf] to hand handlers typed values
// without encoding them.
package membroker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/transport"
)

// MaxRedeliveryDelay caps the doubling redelivery delay of a nacked event.
const MaxRedeliveryDelay = 5 * time.Second

// Config is a broker's configuration; every field must be set.
type Config struct {
	Buffer  int           // events a queue holds before Send blocks
	Delay   time.Duration // first redelivery delay of a nacked event
	MaxSize int           // largest message the watermill publisher accepts
}

// HandleOf returns the broker handle of a memory transport, or nil for any
// other transport. adapters/memory sets it at init.
var HandleOf = func(any) *Handle { return nil }

// Delivery is one published event as the broker holds it. It is shared by
// every queue the event goes to: read-only once sent.
type Delivery struct {
	ID       string
	Payload  []byte           // the encoded event; may be nil when Value is set
	Metadata message.Metadata // read-only
	Value    any              // the typed event, for in-process handlers; may be nil
}

// Item is a delivery taken from a queue.
type Item struct {
	*Delivery
	// Redeliveries counts the nacks of this delivery in this queue.
	Redeliveries int
}

type groupKey struct{ group, topic string }

// route is a topic's list of groups. The slice is replaced, never changed, so
// a publisher can walk it without holding the lock.
type route struct{ groups []*group }

type group struct {
	key     groupKey
	ch      chan Item     // published events, FIFO, capacity Buffer
	gone    chan struct{} // closed when the last member leaves
	refs    int
	pending atomic.Int64  // nacked items not yet taken again (waiting or due)
	due     chan struct{} // signalled when dueq gets items (capacity 1)
	dueMu   sync.Mutex
	dueq    []Item // nacked items whose delay has passed, oldest first
}

// makeDue appends it to the due items and wakes a consumer. It never blocks.
func (g *group) makeDue(it Item, front bool) {
	g.dueMu.Lock()
	if front {
		g.dueq = append([]Item{it}, g.dueq...)
	} else {
		g.dueq = append(g.dueq, it)
	}
	g.dueMu.Unlock()
	select {
	case g.due <- struct{}{}:
	default:
	}
}

// popDue takes the oldest due item.
func (g *group) popDue() (Item, bool) {
	g.dueMu.Lock()
	defer g.dueMu.Unlock()
	if len(g.dueq) == 0 {
		return Item{}, false
	}
	it := g.dueq[0]
	g.dueq[0] = Item{}
	g.dueq = g.dueq[1:]
	if len(g.dueq) > 0 { // more for another consumer
		select {
		case g.due <- struct{}{}:
		default:
		}
	}
	g.pending.Add(-1)
	return it, true
}

// Broker is shared by a memory transport and its peers.
type Broker struct {
	cfg    Config
	mu     sync.RWMutex
	routes map[string]*route
	groups map[groupKey]*group
	done   chan struct{}
	refs   int

	Poison *PoisonMap
	track  *TrackMap  // made by the first DeliveryStore (track.go)
	rr     responders // request/reply (request.go)
}

// Handle is one transport's connection to a broker; closing the last handle
// closes the broker.
type Handle struct {
	b      *Broker
	closed atomic.Bool
}

// New returns a handle on a new broker.
func New(cfg Config) *Handle {
	b := &Broker{cfg: cfg, routes: map[string]*route{}, groups: map[groupKey]*group{},
		done: make(chan struct{}), refs: 1, Poison: NewPoisonMap()}
	return &Handle{b: b}
}

// Config returns the broker's configuration.
func (h *Handle) Config() Config { return h.b.cfg }

// Broker returns the handle's broker.
func (h *Handle) Broker() *Broker { return h.b }

// Peer returns another handle on the same broker.
func (h *Handle) Peer() *Handle {
	h.b.mu.Lock()
	defer h.b.mu.Unlock()
	h.b.refs++
	return &Handle{b: h.b}
}

// Close closes this handle; the last one closes the broker: blocked Sends
// return ErrClosed and queued events are dropped. Idempotent.
func (h *Handle) Close() {
	if h.closed.Swap(true) {
		return
	}
	b := h.b
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refs--
	if b.refs == 0 {
		close(b.done)
	}
}

// Closed reports whether this handle or the broker is closed.
func (h *Handle) Closed() bool {
	if h.closed.Load() {
		return true
	}
	select {
	case <-h.b.done:
		return true
	default:
		return false
	}
}

// ErrClosed is the error of every call on a closed handle.
var errClosed = fmt.Errorf("herald/memory: %w", transport.ErrClosed)

// Send queues d for every group subscribed to topic, blocking while a queue is
// full. It returns nil once every queue holds d (or no group is subscribed),
// ctx.Err() if ctx ends first, or an error wrapping transport.ErrClosed. If it
// returns an error, the groups whose queues had room already hold d.
func (h *Handle) Send(ctx context.Context, topic string, d *Delivery) error {
	if h.Closed() {
		return errClosed
	}
	b := h.b
	b.mu.RLock()
	r := b.routes[topic]
	b.mu.RUnlock()
	if r == nil {
		return nil
	}
	it := Item{Delivery: d}
	var gone error
	for _, g := range r.groups {
		select {
		case g.ch <- it:
			continue
		default:
		}
		select {
		case g.ch <- it:
		case <-g.gone:
			gone = fmt.Errorf("%w: %q", ErrGone, g.key.group)
		case <-ctx.Done():
			return ctx.Err()
		case <-b.done:
			return errClosed
		}
	}
	return gone
}

// ErrGone is returned by Send, after every other group got the delivery, when
// a group's last member left while Send waited for room in its queue: that
// group never got it.
var ErrGone = errors.New("herald/memory: handler left while the publish waited")

// SendTo queues d for the group named groupName alone (a replay to one
// handler), whatever its topic, blocking while its queue is full. It returns
// an error wrapping transport.ErrNoHandler if no group has that name.
func (h *Handle) SendTo(ctx context.Context, groupName string, d *Delivery) error {
	if h.Closed() {
		return errClosed
	}
	b := h.b
	var g *group
	b.mu.RLock()
	for k, gg := range b.groups {
		if k.group == groupName {
			g = gg
			break
		}
	}
	b.mu.RUnlock()
	noGroup := fmt.Errorf("herald/memory: %w: %q", transport.ErrNoHandler, groupName)
	if g == nil {
		return noGroup
	}
	select {
	case g.ch <- Item{Delivery: d}:
		return nil
	case <-g.gone:
		return noGroup
	case <-ctx.Done():
		return ctx.Err()
	case <-b.done:
		return errClosed
	}
}

// Subscribed reports whether a group of this name is subscribed to topic.
func (h *Handle) Subscribed(groupName, topic string) bool {
	h.b.mu.RLock()
	defer h.b.mu.RUnlock()
	return h.b.groups[groupKey{groupName, topic}] != nil
}

// Join makes the caller a member of group for topic and returns its queue.
// Members of one group share the queue's events. Call Leave when done; the
// queue and its events are dropped when its last member leaves.
func (h *Handle) Join(groupName, topic string) (*Queue, error) {
	if h.Closed() {
		return nil, errClosed
	}
	b := h.b
	b.mu.Lock()
	defer b.mu.Unlock()
	k := groupKey{groupName, topic}
	g := b.groups[k]
	if g == nil {
		g = &group{key: k, ch: make(chan Item, b.cfg.Buffer), gone: make(chan struct{}),
			due: make(chan struct{}, 1)}
		b.groups[k] = g
		old := b.routes[topic]
		nr := &route{}
		if old != nil {
			nr.groups = append(nr.groups, old.groups...)
		}
		nr.groups = append(nr.groups, g)
		b.routes[topic] = nr
	}
	g.refs++
	return &Queue{b: b, g: g}, nil
}

// Queue is one member's handle on a group's queue for a topic.
type Queue struct {
	b    *Broker
	g    *group
	left atomic.Bool
}

// Next returns the next item: a nacked one that is due, else a published one.
// While a buffer's worth of nacked items wait for redelivery, it takes only
// those, so that a consumer that nacks everything (an open circuit breaker)
// stops draining the queue and publishers block, instead of the backlog
// growing: a group so holds at most twice its buffer, plus the items in
// flight. Next returns false when stop is closed, the group is gone or the
// broker closed.
func (q *Queue) Next(stop <-chan struct{}) (Item, bool) {
	g := q.g
	if g.pending.Load() == 0 {
		// The common case: nothing nacked, an event queued. A plain
		// non-blocking receive is far cheaper than the select below.
		select {
		case it := <-g.ch:
			return it, true
		default:
		}
	}
	for {
		p := g.pending.Load()
		if p > 0 {
			if it, ok := g.popDue(); ok {
				return it, true
			}
		}
		var ch chan Item
		if p < int64(cap(g.ch)) {
			ch = g.ch
		}
		select {
		case it := <-ch:
			return it, true
		case <-g.due:
		case <-stop:
			return Item{}, false
		case <-g.gone:
			return Item{}, false
		case <-q.b.done:
			return Item{}, false
		}
	}
}

// TryNext is Next without waiting: false when nothing is queued or due now.
func (q *Queue) TryNext() (Item, bool) {
	g := q.g
	if g.pending.Load() > 0 {
		if it, ok := g.popDue(); ok {
			return it, true
		}
	}
	select {
	case it := <-g.ch:
		return it, true
	default:
		return Item{}, false
	}
}

// Len returns the number of events waiting: queued, and nacked ones waiting
// for their redelivery.
func (q *Queue) Len() int { return len(q.g.ch) + int(q.g.pending.Load()) }

// Nack gives it back: it is due again after delay, or, when delay is 0, after
// the broker's redelivery delay doubled with each earlier nack (capped at
// [MaxRedeliveryDelay]). It never blocks.
func (q *Queue) Nack(it Item, delay time.Duration) {
	g := q.g
	if delay <= 0 {
		delay = min(q.b.cfg.Delay<<min(it.Redeliveries, 16), MaxRedeliveryDelay)
	}
	it.Redeliveries++
	g.pending.Add(1)
	time.AfterFunc(delay, func() { g.makeDue(it, false) })
}

// Requeue gives it back at once, to be taken before any other: an item taken
// but not started (its consumer is stopping). It never blocks.
func (q *Queue) Requeue(it Item) {
	q.g.pending.Add(1)
	q.g.makeDue(it, true)
}

// Done is closed when the broker closes.
func (q *Queue) Done() <-chan struct{} { return q.b.done }

// Leave ends this membership. When the last member leaves, the group stops
// receiving events and its queued events are dropped. Leave is idempotent.
func (q *Queue) Leave() {
	if q.left.Swap(true) {
		return
	}
	b := q.b
	b.mu.Lock()
	defer b.mu.Unlock()
	g := q.g
	g.refs--
	if g.refs > 0 {
		return
	}
	close(g.gone)
	delete(b.groups, g.key)
	old := b.routes[g.key.topic]
	nr := &route{}
	for _, o := range old.groups {
		if o != g {
			nr.groups = append(nr.groups, o)
		}
	}
	if len(nr.groups) == 0 {
		delete(b.routes, g.key.topic)
	} else {
		b.routes[g.key.topic] = nr
	}
}

// Backlog returns the number of events waiting in the queue of group for
// topic, as [Queue.Len] counts them; 0 when no such group is subscribed.
func (h *Handle) Backlog(groupName, topic string) int {
	h.b.mu.RLock()
	g := h.b.groups[groupKey{groupName, topic}]
	h.b.mu.RUnlock()
	if g == nil {
		return 0
	}
	return len(g.ch) + int(g.pending.Load())
}

// GroupInfo describes one group's queue for a topic.
type GroupInfo struct {
	Group, Topic string
	Len          int // events waiting: queued, and nacked ones waiting for redelivery
}

// Groups returns every group's queue of the broker, in no order.
func (h *Handle) Groups() []GroupInfo {
	h.b.mu.RLock()
	defer h.b.mu.RUnlock()
	out := make([]GroupInfo, 0, len(h.b.groups))
	for k, g := range h.b.groups {
		out = append(out, GroupInfo{Group: k.group, Topic: k.topic, Len: len(g.ch) + int(g.pending.Load())})
	}
	return out
}
