package event

import "github.com/ThreeDotsLabs/watermill/message"

// MarkPoisoned records that msg's delivery ended in the poison queue (its
// record is stored). It does nothing for a message the bus did not bind.
func MarkPoisoned(msg *message.Message) {
	if d := deliveryOf(msg); d != nil {
		d.poisoned = true
	}
}

// Poisoned reports whether [MarkPoisoned] was called for msg's delivery: the
// observers outside the Poison middleware (tracing, metrics, stats) tell a
// poisoned delivery, which Poison acks, from a handled one with it.
func Poisoned(msg *message.Message) bool {
	d := deliveryOf(msg)
	return d != nil && d.poisoned
}

// SetFailure records the error message of msg's last failed attempt, for
// [Failure]. It does nothing for a message the bus did not bind.
func SetFailure(msg *message.Message, err string) {
	if d := deliveryOf(msg); d != nil {
		if d.ext == nil {
			d.ext = &extra{}
		}
		d.ext.failure = err
	}
}

// Failure returns what [SetFailure] recorded for msg's delivery, or "".
func Failure(msg *message.Message) string {
	if d := deliveryOf(msg); d != nil && d.ext != nil {
		return d.ext.failure
	}
	return ""
}
