// Package reqinbox hands the requests of one responder (transport.Requester's
// Respond) to the bus's workers: an unbuffered channel that transports send
// on until the responder stops, then close, without a send racing the close.
package reqinbox

import (
	"context"
	"sync"

	"github.com/heraldbus/herald/transport"
)

// Inbox is one responder's channel. Sends hold mu's read lock; Close first
// closes done, which ends the sends waiting, then closes ch under the write
// lock.
type Inbox struct {
	ch     chan transport.Request
	done   chan struct{}
	once   sync.Once
	mu     sync.RWMutex
	closed bool
}

// New returns an open inbox.
func New() *Inbox {
	return &Inbox{ch: make(chan transport.Request), done: make(chan struct{})}
}

// C is the channel the workers read; it is closed by Close.
func (in *Inbox) C() <-chan transport.Request { return in.ch }

// Send waits until a worker takes r (true), the inbox closes (false), abort
// is closed (false) or ctx ends (its error).
func (in *Inbox) Send(ctx context.Context, abort <-chan struct{}, r transport.Request) (bool, error) {
	in.mu.RLock()
	defer in.mu.RUnlock()
	if in.closed {
		return false, nil
	}
	select {
	case in.ch <- r:
		return true, nil
	case <-in.done:
		return false, nil
	case <-abort:
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// Close closes the channel once the sends in progress have given up; it is
// idempotent.
func (in *Inbox) Close() {
	in.once.Do(func() {
		close(in.done)
		in.mu.Lock()
		in.closed = true
		close(in.ch)
		in.mu.Unlock()
	})
}
