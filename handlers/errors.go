package handlers

import (
	"errors"
	"fmt"
)

// DecodeError reports a message that cannot be turned into the handler's event:
// a malformed payload, a message without Herald metadata, or an event of another
// type on the handler's subject. It is never retried: the message goes to the
// poison queue at once.
type DecodeError struct {
	// Event is the event name the handler expects.
	Event string
	// Reason says what was wrong, in words.
	Reason string
	// Err is the codec's error, if any.
	Err error
}

// Error implements error.
func (e *DecodeError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("herald: cannot decode %s: %s: %v", e.Event, e.Reason, e.Err)
	}
	return fmt.Sprintf("herald: cannot decode %s: %s", e.Event, e.Reason)
}

// Unwrap returns the codec's error.
func (e *DecodeError) Unwrap() error { return e.Err }

// permanentError marks an error that must not be retried.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// Permanent marks err as a failure that retrying cannot fix: the event goes to
// the poison queue at once. errors.Is and errors.As see through the mark.
// Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or any error it wraps, was marked with
// [Permanent] or is a [*DecodeError].
func IsPermanent(err error) bool {
	var p *permanentError
	if errors.As(err, &p) {
		return true
	}
	var d *DecodeError
	return errors.As(err, &d)
}

// PanicError is the error a handler's panic becomes. Stack is the goroutine's
// stack at the panic; it is kept in the poison record.
type PanicError struct {
	Value any
	Stack string
}

// Error implements error. The stack is not part of the message; read Stack.
func (p *PanicError) Error() string { return fmt.Sprintf("herald: handler panicked: %v", p.Value) }

// Unwrap returns the panic value if it was an error.
func (p *PanicError) Unwrap() error {
	if err, ok := p.Value.(error); ok {
		return err
	}
	return nil
}
