package transport

import (
	"fmt"
	"time"
	"unicode"
)

// Metadata keys of the wire format: Herald sets them on every message it
// publishes, and a transport carries them unchanged (on NATS they are header
// names). A service in another language publishes a Herald event by sending
// the payload (JSON by default) with at least KeyID and KeyEvent set.
const (
	KeyID            = "Herald-Id"             // unique event ID; also the dedup ID where the transport has one
	KeyEvent         = "Herald-Event"          // event name, e.g. "orders.OrderPlaced"
	KeyCorrelationID = "Herald-Correlation-Id" // ID of the event that started the chain; absent means KeyID
	KeyCausationID   = "Herald-Causation-Id"   // ID of the event whose handler published this one
	KeyPublishedAt   = "Herald-Published-At"   // RFC 3339 with nanoseconds, UTC
	KeyOrderingKey   = "Herald-Ordering-Key"   // the ordering key, if any
	KeyContentType   = "Content-Type"          // the codec's content type; absent means "application/json"

	// KeyDeliveryCount is set by a transport on a message it delivers, never
	// by a publisher: how many times this message was delivered to this
	// handler, 1 the first time. The bus counts attempts across
	// redeliveries from it; without it, every retry runs in process.
	KeyDeliveryCount = "Herald-Delivery-Count"
)

// Event is the wire metadata of an event: what travels with its payload, the
// same for every handler and every attempt.
type Event struct {
	ID            string    // unique event ID
	Name          string    // event name
	CorrelationID string    // the root event's ID; equal to ID for a root event
	CausationID   string    // ID of the event being handled when this one was published; "" for a root event
	OrderingKey   string    // ordering key given at publish, if any
	PublishedAt   time.Time // when Publish was called
}

// ValidName reports whether name can be an event or handler name: a NATS
// subject of dot-separated tokens, none empty, with no whitespace, control
// characters, '*' or '>', at most 255 bytes. The error wraps [ErrInvalidName].
func ValidName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidName)
	}
	if len(name) > 255 {
		return fmt.Errorf("%w: %q... is longer than 255 bytes", ErrInvalidName, name[:32])
	}
	prev := '.'
	for _, r := range name {
		switch {
		case r == '.' && prev == '.':
			return fmt.Errorf("%w: %q has an empty token", ErrInvalidName, name)
		case r == '*' || r == '>':
			return fmt.Errorf("%w: %q contains the wildcard %q", ErrInvalidName, name, r)
		case unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar:
			return fmt.Errorf("%w: %q contains whitespace or a control character", ErrInvalidName, name)
		}
		prev = r
	}
	if prev == '.' {
		return fmt.Errorf("%w: %q has an empty token", ErrInvalidName, name)
	}
	return nil
}
