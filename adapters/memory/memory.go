// Package memory is Herald's in-process transport: a bounded FIFO queue per
// handler name and event topic, with consumer-group semantics.
//
// Every handler name (group) subscribed to a topic gets every event published
// to it; the subscribers of one name share that name's events. A queue holds at
// most the buffer size (default 1024) of waiting events; when it is full,
// Publish blocks until there is room, the publish's ctx ends, or the transport
// closes. Nacked events waiting for redelivery count against the buffer too
// (see [Queue.Nack]), so a group never holds more than about twice its buffer. A nacked event goes back to its queue after a
// delay that doubles with each nack (100ms, 200ms, ... capped at 5s), never in a
// tight loop.
//
// Durability: events live in this process only. Events queued when the process
// ends, and events published while no subscriber of a name exists, are gone.
// Use the NATS adapter when that matters.
//
// Transport implements watermill's message.Publisher and message.Subscriber
// (through [Transport.Publisher] and [Transport.Subscriber]), so any watermill
// code can use it; the bus uses a faster path ([Transport.Send], [Transport.Join])
// that hands each handler the typed event without encoding it.
package memory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// ErrClosed is returned by every call on a closed transport. It has a
// TransportClosed() bool method, which the bus maps to its own ErrClosed.
var ErrClosed error = closedError{}

type closedError struct{}

func (closedError) Error() string { return "memory transport: closed" }

// TransportClosed marks the error for the bus.
func (closedError) TransportClosed() bool { return true }

// Defaults of the options.
const (
	DefaultBufferSize      = 1024
	DefaultRedeliveryDelay = 100 * time.Millisecond
	maxRedeliveryDelay     = 5 * time.Second
)

// Option configures a Transport.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	buffer  int
	delay   time.Duration
	maxSize int
}

// DefaultMaxMessageSize is the largest message (payload plus metadata) the
// watermill publisher accepts: 1 MiB, the default max_payload of a NATS server,
// so that what works in one process does not break after the move to NATS.
const DefaultMaxMessageSize = 1 << 20

// WithMaxMessageSize sets the largest message, payload plus metadata keys and
// values, that [Transport.Publisher] accepts; larger ones get an error wrapping
// [ErrTooLarge]. n < 1 means the default, [DefaultMaxMessageSize].
func WithMaxMessageSize(n int) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.maxSize = n
		}
	})
}

// ErrTooLarge is wrapped by the publisher's error for a message larger than
// the transport's maximum. It has an EventTooLarge() bool method, which the bus
// maps to its own ErrEventTooLarge.
var ErrTooLarge error = tooLargeError{}

type tooLargeError struct{}

func (tooLargeError) Error() string { return "memory transport: message too large" }

// EventTooLarge marks the error for the bus.
func (tooLargeError) EventTooLarge() bool { return true }

// WithBufferSize sets how many events one handler name's queue holds (waiting
// or in flight) before Publish blocks. n < 1 means the default, 1024.
func WithBufferSize(n int) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.buffer = n
		}
	})
}

// WithRedeliveryDelay sets the delay before the first redelivery of a nacked
// event; it doubles with each further nack of that event, up to 5s. d <= 0 means
// the default, 100ms.
func WithRedeliveryDelay(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.delay = d
		}
	})
}

// Delivery is one published event as the transport holds it. It is shared by
// every queue the event goes to: treat it as read-only once sent.
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

// Transport is an in-process transport. It is safe for concurrent use. The zero
// value is not usable: call [New].
type Transport struct {
	b      *broker
	closed atomic.Bool
}

// New returns a transport with its own broker (queues and poison records).
func New(opts ...Option) *Transport {
	c := config{buffer: DefaultBufferSize, delay: DefaultRedeliveryDelay, maxSize: DefaultMaxMessageSize}
	for _, o := range opts {
		o.apply(&c)
	}
	b := &broker{cfg: c, routes: map[string]*route{}, groups: map[groupKey]*group{}, done: make(chan struct{}), refs: 1,
		poison: map[string]*poisonEntry{}}
	return &Transport{b: b}
}

// Peer returns another transport on the same broker, as a second process would
// connect to the same server: handlers with the same name on t and on the peer
// share their events. The broker closes when t and all its peers are closed.
func (t *Transport) Peer() *Transport {
	t.b.mu.Lock()
	defer t.b.mu.Unlock()
	t.b.refs++
	return &Transport{b: t.b}
}

// Close closes this handle. When it is the last open handle on the broker, the
// broker closes: blocked Publish calls return [ErrClosed], queues are closed and
// queued events dropped. Close is idempotent.
func (t *Transport) Close() error {
	if t.closed.Swap(true) {
		return nil
	}
	b := t.b
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refs--
	if b.refs == 0 {
		close(b.done)
	}
	return nil
}

func (t *Transport) isClosed() bool {
	if t.closed.Load() {
		return true
	}
	select {
	case <-t.b.done:
		return true
	default:
		return false
	}
}

type groupKey struct{ group, topic string }

// route is a topic's list of groups. The slice is replaced, never changed, so
// a publisher can walk it without holding the lock.
type route struct{ groups []*group }

type group struct {
	key     groupKey
	ch      chan Item
	gone    chan struct{} // closed when the last member leaves
	refs    int
	delay   time.Duration
	pending atomic.Int64  // nacked items waiting for their redelivery
	wake    chan struct{} // a redelivery became due (capacity 1)
}

type broker struct {
	cfg    config
	mu     sync.RWMutex
	routes map[string]*route
	groups map[groupKey]*group
	done   chan struct{}
	refs   int

	pmu    sync.Mutex
	poison map[string]*poisonEntry
	pseq   uint64
}

// Send queues d for every group subscribed to topic, blocking while a queue is
// full. It returns nil once every queue holds d (or no group is subscribed),
// ctx.Err() if ctx ends first, or [ErrClosed]. If it returns an error, the groups
// whose queues had room already hold d.
func (t *Transport) Send(ctx context.Context, topic string, d *Delivery) error {
	if t.isClosed() {
		return ErrClosed
	}
	b := t.b
	b.mu.RLock()
	r := b.routes[topic]
	b.mu.RUnlock()
	if r == nil {
		return nil
	}
	it := Item{Delivery: d}
	for _, g := range r.groups {
		select {
		case g.ch <- it:
			continue
		default:
		}
		select {
		case g.ch <- it:
		case <-g.gone:
		case <-ctx.Done():
			return ctx.Err()
		case <-b.done:
			return ErrClosed
		}
	}
	return nil
}

// ErrNoGroup is returned by SendTo when the group is not subscribed to the topic.
var ErrNoGroup = errors.New("memory transport: no such group on the topic")

// SendTo queues d for one group of topic only (a replay to one handler),
// blocking while its queue is full. It returns [ErrNoGroup] if the group is not
// subscribed to topic.
func (t *Transport) SendTo(ctx context.Context, groupName, topic string, d *Delivery) error {
	if t.isClosed() {
		return ErrClosed
	}
	b := t.b
	b.mu.RLock()
	g := b.groups[groupKey{groupName, topic}]
	b.mu.RUnlock()
	if g == nil {
		return fmt.Errorf("%w: %q on %q", ErrNoGroup, groupName, topic)
	}
	select {
	case g.ch <- Item{Delivery: d}:
		return nil
	case <-g.gone:
		return fmt.Errorf("%w: %q on %q", ErrNoGroup, groupName, topic)
	case <-ctx.Done():
		return ctx.Err()
	case <-b.done:
		return ErrClosed
	}
}

// Queue is one member's handle on a group's queue for a topic.
type Queue struct {
	b    *broker
	g    *group
	left atomic.Bool
}

// Join makes the caller a member of group for topic and returns its queue.
// Members of one group share the queue's events. Call Leave when done; the
// queue and its events are dropped when its last member leaves.
func (t *Transport) Join(groupName, topic string) (*Queue, error) {
	if t.isClosed() {
		return nil, ErrClosed
	}
	b := t.b
	b.mu.Lock()
	defer b.mu.Unlock()
	k := groupKey{groupName, topic}
	g := b.groups[k]
	if g == nil {
		g = &group{key: k, ch: make(chan Item, b.cfg.buffer), gone: make(chan struct{}), delay: b.cfg.delay,
			wake: make(chan struct{}, 1)}
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

// C returns the channel the queue's items arrive on. It is never closed: select
// on [Queue.Done] as well.
func (q *Queue) C() <-chan Item { return q.g.ch }

// Done is closed when the transport closes.
func (q *Queue) Done() <-chan struct{} { return q.b.done }

// Nack puts it back into the queue after the redelivery delay (which doubles
// with it.Redeliveries). Nacked events count against the buffer: while a
// buffer's worth of them wait for their redelivery, Nack waits too, so that a
// consumer that nacks everything (an open circuit breaker) stops draining the
// queue and publishers block, instead of the backlog growing without bound.
// The events of a group, waiting, in flight or waiting for redelivery, are so
// bounded by about twice the buffer size.
func (q *Queue) Nack(it Item) {
	g := q.g
	delay := g.delay << min(it.Redeliveries, 16)
	delay = min(delay, maxRedeliveryDelay)
	it.Redeliveries++
	g.pending.Add(1)
	time.AfterFunc(delay, func() {
		g.pending.Add(-1)
		select {
		case g.wake <- struct{}{}:
		default:
		}
		q.Requeue(it)
	})
	for g.pending.Load() >= int64(cap(g.ch)) {
		t := time.NewTimer(10 * time.Millisecond) // several waiters share one wake-up
		select {
		case <-g.wake:
		case <-t.C:
		case <-g.gone:
		case <-q.b.done:
		}
		t.Stop()
		select {
		case <-g.gone:
			return
		case <-q.b.done:
			return
		default:
		}
	}
}

// Requeue puts it back into the queue at once. It blocks only if the queue is
// full, until there is room or the queue is gone.
func (q *Queue) Requeue(it Item) {
	select {
	case q.g.ch <- it:
	case <-q.g.gone:
	case <-q.b.done:
	}
}

// Len returns the number of events waiting in the queue.
func (q *Queue) Len() int { return len(q.g.ch) }

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

func (t *Transport) String() string {
	return fmt.Sprintf("memory.Transport(buffer=%d)", t.b.cfg.buffer)
}

// Subscribed reports whether a group is subscribed to topic.
func (t *Transport) Subscribed(topic string) bool {
	t.b.mu.RLock()
	defer t.b.mu.RUnlock()
	return t.b.routes[topic] != nil
}
