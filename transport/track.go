package transport

import (
	"context"
	"fmt"
	"time"
)

// DeliveryState is where the delivery of one event to one handler stands, as
// delivery tracking records it (bus.WithTracking). The states are ordered as a
// delivery goes through them; a record never moves back to an earlier one
// (see [Delivery.Merge]).
type DeliveryState uint8

// The states of a delivery.
const (
	// StateQueued: published, not yet started by the handler.
	StateQueued DeliveryState = iota + 1
	// StateRunning: an attempt of the handler is running.
	StateRunning
	// StateRetrying: an attempt failed and another will follow, in process
	// or after a redelivery; Delivery.LastError says why.
	StateRetrying
	// StateDone: the handler succeeded.
	StateDone
	// StatePoisoned: the handler failed for good; the event is in the poison
	// queue.
	StatePoisoned
)

var stateNames = [...]string{"", "queued", "running", "retrying", "done", "poisoned"}

// String returns the state's lower-case name ("queued", "running", ...).
func (s DeliveryState) String() string {
	if int(s) < len(stateNames) && s != 0 {
		return stateNames[s]
	}
	return fmt.Sprintf("DeliveryState(%d)", uint8(s))
}

// MarshalText encodes the state as its name, so that JSON shows "running".
func (s DeliveryState) MarshalText() ([]byte, error) {
	if s == 0 || int(s) >= len(stateNames) {
		return nil, fmt.Errorf("herald: invalid delivery state %d", uint8(s))
	}
	return []byte(stateNames[s]), nil
}

// UnmarshalText decodes a state's name.
func (s *DeliveryState) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if i > 0 && n == string(b) {
			*s = DeliveryState(i)
			return nil
		}
	}
	return fmt.Errorf("herald: unknown delivery state %q", b)
}

// Final reports whether the state is the last of its delivery (done or
// poisoned).
func (s DeliveryState) Final() bool { return s == StateDone || s == StatePoisoned }

// Delivery is what delivery tracking knows of one event's delivery to one
// handler: one record, written by the publisher (queued) and by the handler's
// process at each state change.
type Delivery struct {
	EventID string        `json:"event_id"`
	Event   string        `json:"event"` // the event's name
	Handler string        `json:"handler"`
	State   DeliveryState `json:"state"`
	// Attempt is the number of the attempt running, failed (retrying) or
	// last made (done, poisoned); 0 while queued.
	Attempt int `json:"attempt"`
	// LastError is the error of the last failed attempt; "" if none failed.
	LastError string `json:"last_error,omitempty"`
	// Queued is when the event was published; Started when the first attempt
	// started; Updated when the record last changed; Finished when it
	// reached done or poisoned. A time not known yet is zero.
	Queued   time.Time `json:"queued,omitzero"`
	Started  time.Time `json:"started,omitzero"`
	Updated  time.Time `json:"updated,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
}

// Before reports whether d is an earlier point of the delivery than o: a
// lower attempt, or the same attempt at an earlier state. Records written out
// of order (by several processes, or asynchronously) are put back in order
// with it.
func (d Delivery) Before(o Delivery) bool {
	if d.Attempt != o.Attempt {
		return d.Attempt < o.Attempt
	}
	return d.State < o.State
}

// Merge returns the later of d and o ([Delivery.Before]), with the earliest
// Queued and Started times of the two, and the other's LastError when the
// later has none: what a store keeps when both were put for one event and
// handler, in either order.
func (d Delivery) Merge(o Delivery) Delivery {
	late, early := o, d
	if o.Before(d) {
		late, early = d, o
	}
	late.Queued = earliest(late.Queued, early.Queued)
	late.Started = earliest(late.Started, early.Started)
	if late.LastError == "" {
		late.LastError = early.LastError
	}
	return late
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// DeliveryStore keeps delivery tracking records for a time to live given when
// it was made ([Tracker]). Implementations are safe for concurrent use and
// honour ctx.
//
// PutDelivery records d for (d.EventID, d.Handler). Records of one pair may
// be put in any order, by several processes: the store keeps, or returns,
// their [Delivery.Merge], so that a delivery never appears to go back. A
// record is removed (and its memory or storage freed) once ttl has passed
// since it was last put.
//
// Deliveries returns the records of eventID, one per handler, sorted by
// handler name; none (and no error) when the event is unknown or its records
// expired.
type DeliveryStore interface {
	PutDelivery(ctx context.Context, d Delivery) error
	Deliveries(ctx context.Context, eventID string) ([]Delivery, error)
}

// Tracker is implemented by transports that keep delivery tracking records
// where every process on the same broker reads them (NATS: a JetStream
// key-value bucket). The bus calls DeliveryStore once, from bus.New when
// tracking is on (bus.WithTracking), with the records' time to live; the
// store may prepare itself (create its bucket) at the transport's Start or on
// first use. Without it the bus keeps the records in process memory: Track
// then sees only the deliveries this process published or handled.
type Tracker interface {
	DeliveryStore(ttl time.Duration) (DeliveryStore, error)
}
