// Package adapterkit is the plumbing the transport adapters (adapters/kafka,
// adapters/nats, adapters/rabbitmq, adapters/memory) share: option checks
// and defaults, derived broker names, the life of a transport's subscribers
// and of their pumps, a pump's window of messages handed out, and the
// encoding, paging and indexing of poison records. It holds no broker
// client; each adapter keeps its own wire protocol.
//
// Like the adapters, it imports transport and never bus or middleware.
package adapterkit

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldbus/herald/transport"
)

// Invalid returns the error of a bad option of the named adapter ("kafka"):
// "herald/<adapter>: herald: invalid option: <detail>", wrapping
// [transport.ErrInvalidOption] and any %w among args.
func Invalid(adapter, format string, args ...any) error {
	return fmt.Errorf("herald/"+adapter+": %w: "+format, append([]any{transport.ErrInvalidOption}, args...)...)
}

// Limit is a numeric option: the field it fills, its name in errors, the
// default that replaces zero, and the bounds of a non-zero value. Make one
// with [Field].
type Limit[T int | time.Duration] struct {
	name     string
	v        *T
	def      T
	min, max T
}

// Field is the limit of the option name held in *v: zero means def, and a
// non-zero value must be within [min, max].
func Field[T int | time.Duration](name string, v *T, def, min, max T) Limit[T] {
	return Limit[T]{name: name, v: v, def: def, min: min, max: max}
}

// Fill checks each limit's field in order: a negative value, or a non-zero
// one outside [Min, Max], is an [Invalid] error of the adapter naming the
// field; a zero one is set to its default. It stops at the first error.
func Fill[T int | time.Duration](adapter string, limits ...Limit[T]) error {
	for _, l := range limits {
		switch v := *l.v; {
		case v < 0:
			return Invalid(adapter, "%s %v < 0", l.name, v)
		case v > l.max:
			return Invalid(adapter, "%s %v > %v", l.name, v, l.max)
		case v > 0 && v < l.min:
			return Invalid(adapter, "%s %v < %v", l.name, v, l.min)
		case v == 0:
			*l.v = l.def
		}
	}
	return nil
}

// IsClosed reports whether done is closed, without waiting.
func IsClosed(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// CloseAll closes every member of set, a transport's live subscribers
// guarded by mu. It holds mu only to copy the set, so that a member's Close
// may take mu to remove itself.
func CloseAll[S interface {
	comparable
	io.Closer
}](mu *sync.Mutex, set map[S]struct{}) {
	mu.Lock()
	members := make([]S, 0, len(set))
	for s := range set {
		members = append(members, s)
	}
	mu.Unlock()
	for _, s := range members {
		_ = s.Close()
	}
}

// Prepared runs a transport's preparation (reaching the broker, declaring
// its streams or topics) until one run succeeds, one run at a time. The zero
// value has not prepared yet.
type Prepared struct {
	mu sync.Mutex // one run at a time
	ok atomic.Bool
}

// Do returns an error wrapping [transport.ErrClosed] once done is closed,
// nil if a run of prepare succeeded since the last [Prepared.Reset], and
// otherwise runs prepare, after any run in progress, and returns its error.
func (p *Prepared) Do(done <-chan struct{}, prepare func() error) error {
	if IsClosed(done) {
		return transport.ErrClosed
	}
	if p.ok.Load() {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ok.Load() {
		return nil
	}
	if err := prepare(); err != nil {
		return err
	}
	p.ok.Store(true)
	return nil
}

// Reset makes the next Do prepare again (the broker lost what was
// prepared). It reports whether this call undid a success: of callers
// racing to reset, one gets true.
func (p *Prepared) Reset() bool { return p.ok.CompareAndSwap(true, false) }
