package bus

import (
	"errors"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/middleware"
)

// Errors returned by the bus. Test for them with errors.Is; most are returned
// wrapped, with details.
var (
	// ErrClosed: the bus (or subscription) is closing or closed.
	ErrClosed = errors.New("herald: bus closed")
	// ErrNotStarted: Publish before Start.
	ErrNotStarted = errors.New("herald: bus not started")
	// ErrDuplicateHandler: a handler with this name is already subscribed on this bus.
	ErrDuplicateHandler = errors.New("herald: duplicate handler name")
	// ErrInvalidName: an event or handler name that is not a valid NATS subject token list.
	ErrInvalidName = handlers.ErrInvalidName
	// ErrEventTooLarge: the encoded event is larger than the bus's maximum event size.
	ErrEventTooLarge = errors.New("herald: event too large")
	// ErrInvalidOption: an option with an invalid value.
	ErrInvalidOption = errors.New("herald: invalid option")
	// ErrInvalidEvent: the event's type or value cannot be encoded by the codec
	// (a channel or func field, a NaN float...).
	ErrInvalidEvent = handlers.ErrInvalidEvent
	// ErrPoisonNotFound: no poison record has this ID.
	ErrPoisonNotFound = errors.New("herald: poison record not found")
	// ErrNoHandler: a replay for a handler that no subscriber consumes; the
	// transport would have nowhere to keep it.
	ErrNoHandler = errors.New("herald: no subscriber for handler")
	// ErrPoisonStore: a poison record could not be stored; the event is nacked.
	ErrPoisonStore = middleware.ErrPoisonStore
)

// DecodeError reports a message that cannot become the handler's event
// (malformed payload, missing Herald metadata, another event on the subject).
// Such messages are poisoned at once, never retried.
type DecodeError = handlers.DecodeError

// PanicError is what a handler's panic becomes; its stack goes into the poison record.
type PanicError = handlers.PanicError

// Permanent marks err as a failure that retrying cannot fix: the event goes to
// the poison queue at once. errors.Is/As see through it. Permanent(nil) is nil.
func Permanent(err error) error { return handlers.Permanent(err) }

// IsPermanent reports whether err was marked with [Permanent] or is a
// [*DecodeError].
func IsPermanent(err error) bool { return handlers.IsPermanent(err) }
