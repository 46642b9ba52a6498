package bus

import (
	"errors"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/middleware"
	"github.com/heraldbus/herald/transport"
)

// Errors returned by the bus, most of them wrapped with details: test for them
// with errors.Is. Those shared with transports are the same values as package
// transport's, so a transport's error is recognised without translation.
var (
	// ErrClosed: the bus, the subscription or the transport is closing or closed.
	ErrClosed = transport.ErrClosed
	// ErrNotStarted: Publish before Start.
	ErrNotStarted = errors.New("herald: bus not started")
	// ErrDuplicateHandler: a handler with this name is already subscribed on this bus.
	ErrDuplicateHandler = errors.New("herald: duplicate handler name")
	// ErrInvalidName: an event or handler name that is not a valid NATS subject.
	ErrInvalidName = transport.ErrInvalidName
	// ErrEventTooLarge: the encoded event is larger than the bus's maximum
	// event size or than the transport carries.
	ErrEventTooLarge = transport.ErrTooLarge
	// ErrInvalidOption: an option with an invalid value.
	ErrInvalidOption = transport.ErrInvalidOption
	// ErrInvalidEvent: the event cannot cross a process boundary: its type or
	// value cannot be encoded, or what is encoded cannot be decoded (a channel
	// or func field, an interface type, a NaN float, a nil pointer...).
	ErrInvalidEvent = transport.ErrInvalidEvent
	// ErrPoisonNotFound: no poison record has this ID.
	ErrPoisonNotFound = errors.New("herald: poison record not found")
	// ErrNoHandler: a replay for a handler that nothing consumes, so the
	// transport would have nowhere to keep it.
	ErrNoHandler = transport.ErrNoHandler
	// ErrUnhandled: Close or Stop ended (its ctx did) while events that
	// Publish had accepted were still queued in process (memory transport);
	// the error says how many, of which handlers.
	ErrUnhandled = errors.New("herald: events not handled")
	// ErrHandlerSubscribed: DeleteHandler (or Subscription.Delete) of a
	// handler name that is subscribed on this bus, or still stopping.
	ErrHandlerSubscribed = errors.New("herald: handler is subscribed")
	// ErrPoisonStore: a poison record could not be stored; the event is nacked.
	ErrPoisonStore = middleware.ErrPoisonStore
)

// DecodeError reports a message that cannot become the handler's event
// (malformed payload, missing Herald metadata, another event on the subject).
// Such messages are poisoned at once, never retried.
type DecodeError = handlers.DecodeError

// Permanent marks err as a failure that retrying cannot fix: the event goes to
// the poison queue at once. errors.Is/As see through it. Permanent(nil) is nil.
func Permanent(err error) error { return handlers.Permanent(err) }
