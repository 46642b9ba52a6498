package transport

import "errors"

// The errors a transport (and the bus, which re-exports them) returns
// wrapped, for errors.Is.
var (
	// ErrClosed: the transport (or the bus) is closed or closing.
	ErrClosed = errors.New("herald: closed")
	// ErrTooLarge: a message is larger than the transport carries.
	ErrTooLarge = errors.New("herald: event too large")
	// ErrInvalidOption: an option or configuration field with an invalid value.
	ErrInvalidOption = errors.New("herald: invalid option")
	// ErrInvalidName: an event or handler name that is not a valid NATS
	// subject (see [ValidName]).
	ErrInvalidName = errors.New("herald: invalid name")
	// ErrInvalidEvent: an event whose type or value cannot cross a process
	// boundary: the codec cannot encode it, or cannot decode what it encodes.
	ErrInvalidEvent = errors.New("herald: invalid event")
	// ErrNoHandler: a message for one handler (a replay) that nothing of that
	// name consumes, so the transport would have nowhere to keep it.
	ErrNoHandler = errors.New("herald: no subscriber for handler")
	// ErrNoResponder: a request ([Requester]) that no handler anywhere
	// answers.
	ErrNoResponder = errors.New("herald: no responder for request")
)
