package middleware

import (
	"errors"
	"fmt"
)

// ErrDeferred marks a delivery that was not processed and should come back
// later: Retry does not retry it in process, Poison does not record it, and the
// bus nacks it, so the transport redelivers it after its redelivery delay.
var ErrDeferred = errors.New("herald: delivery deferred")

// Defer wraps err so that errors.Is(result, ErrDeferred) holds.
func Defer(err error) error {
	if err == nil {
		return ErrDeferred
	}
	return fmt.Errorf("%w: %w", ErrDeferred, err)
}

// IsDeferred reports whether err wraps [ErrDeferred].
func IsDeferred(err error) bool { return errors.Is(err, ErrDeferred) }
