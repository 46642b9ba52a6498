// Package memory is Herald's in-process transport: a bounded FIFO queue per
// handler name and event, with consumer-group semantics.
//
// Every handler name subscribed to an event gets every event published to it;
// the subscribers of one name share that name's events. A queue holds at most
// the buffer size (default 1024) of waiting events; when it is full, Publish
// blocks until there is room, the publish's ctx ends, or the transport closes.
// A nacked event comes back after a delay that doubles with each nack (100ms,
// 200ms, ... capped at 5s), or after the delay the bus asks for, never in a
// tight loop and without holding a worker; while a buffer's worth of nacked
// events wait, the queue stops taking new ones, so a name never holds more
// than about twice its buffer.
//
// Durability: events live in this process only. Events queued when the
// process ends, and events published while no subscriber of a name exists, are
// gone; the bus's Close works through queued events until its ctx ends and
// reports those it could not handle. Use the NATS adapter when that matters.
//
// Transport implements watermill's message.Publisher and message.Subscriber
// (through [Transport.Publisher] and [Transport.Subscriber]), so any watermill
// code can use it; the bus uses a faster path that hands each handler the
// typed event without encoding it.
package memory

import (
	"context"
	"fmt"
	"time"

	"github.com/heraldbus/herald/internal/membroker"
	"github.com/heraldbus/herald/transport"
)

// Defaults of the options.
const (
	DefaultBufferSize      = 1024
	DefaultRedeliveryDelay = 100 * time.Millisecond
	// DefaultMaxMessageSize is the largest message (payload plus metadata) the
	// watermill publisher accepts: 1 MiB, the default max_payload of a NATS
	// server, so that what works in one process does not break after the move.
	DefaultMaxMessageSize = 1 << 20

	// MaxBufferSize is the largest buffer [WithBufferSize] accepts.
	MaxBufferSize = 1 << 24
	// MaxMessageSize is the largest size [WithMaxMessageSize] accepts.
	MaxMessageSize = 1 << 30
)

// Option configures a Transport. An invalid one does not stop [New] (whose
// result goes straight into bus.WithTransport); the transport then refuses to
// start, and every call returns an error wrapping transport.ErrInvalidOption.
type Option interface{ apply(*config) error }

type optionFunc func(*config) error

func (f optionFunc) apply(c *config) error { return f(c) }

type config = membroker.Config

func invalid(format string, args ...any) error {
	return fmt.Errorf("herald/memory: %w: "+format, append([]any{transport.ErrInvalidOption}, args...)...)
}

// setInRange stores n, the size option what, if it is within [1, hi].
func setInRange(dst *int, what string, n, hi int) error {
	if n < 1 || n > hi {
		return invalid("%s %d not in [1, %d]", what, n, hi)
	}
	*dst = n
	return nil
}

// WithBufferSize sets how many events one handler name's queue holds before
// Publish blocks: 1 to [MaxBufferSize]; the default is [DefaultBufferSize].
func WithBufferSize(n int) Option {
	return optionFunc(func(c *config) error { return setInRange(&c.Buffer, "buffer size", n, MaxBufferSize) })
}

// WithRedeliveryDelay sets the delay before the first redelivery of a nacked
// event (when the bus asks for none); it doubles with each further nack of
// that event, up to 5s. It must be positive; the default is
// [DefaultRedeliveryDelay].
func WithRedeliveryDelay(d time.Duration) Option {
	return optionFunc(func(c *config) error {
		if d <= 0 || d > membroker.MaxRedeliveryDelay {
			return invalid("redelivery delay %v not in (0, %v]", d, membroker.MaxRedeliveryDelay)
		}
		c.Delay = d
		return nil
	})
}

// WithMaxMessageSize sets the largest message, payload plus metadata keys and
// values, that [Transport.Publisher] accepts: 1 to [MaxMessageSize]; larger
// messages get an error wrapping transport.ErrTooLarge. The default is
// [DefaultMaxMessageSize].
func WithMaxMessageSize(n int) Option {
	return optionFunc(func(c *config) error { return setInRange(&c.MaxSize, "max message size", n, MaxMessageSize) })
}

// Transport is an in-process transport. It is safe for concurrent use. The
// zero value is not usable: call [New].
type Transport struct {
	h   *membroker.Handle
	err error // an invalid option
}

func init() {
	membroker.HandleOf = func(t any) *membroker.Handle {
		if mt, ok := t.(*Transport); ok && mt.err == nil {
			return mt.h
		}
		return nil
	}
}

// New returns a transport with its own broker (queues and poison records).
func New(opts ...Option) *Transport {
	c := config{Buffer: DefaultBufferSize, Delay: DefaultRedeliveryDelay, MaxSize: DefaultMaxMessageSize}
	var err error
	for _, o := range opts {
		if o == nil {
			err = invalid("nil option")
			break
		}
		if err = o.apply(&c); err != nil {
			break
		}
	}
	return &Transport{h: membroker.New(c), err: err}
}

// Start returns the error of an invalid option, if any; the bus calls it from
// its own Start.
func (t *Transport) Start(context.Context) error { return t.err }

// Peer returns another transport on the same broker, as a second process would
// connect to the same server: handlers with the same name on t and on the peer
// share their events. The broker closes when t and all its peers are closed.
func (t *Transport) Peer() *Transport { return &Transport{h: t.h.Peer(), err: t.err} }

// Close closes this transport. When it is the last open one on the broker,
// the broker closes: blocked publishes return an error wrapping
// transport.ErrClosed and queued events are dropped. Close is idempotent.
func (t *Transport) Close() error {
	t.h.Close()
	return nil
}

// String describes the transport.
func (t *Transport) String() string {
	return fmt.Sprintf("memory.Transport(buffer=%d)", t.h.Config().Buffer)
}

// Poison records: the broker keeps them for the life of the process, shared
// with its peers.

var _ transport.PoisonStore = (*Transport)(nil)

// PutPoison stores rec, replacing a record with the same ID.
func (t *Transport) PutPoison(ctx context.Context, rec transport.PoisonRecord) error {
	if t.h.Closed() {
		return fmt.Errorf("herald/memory: %w", transport.ErrClosed)
	}
	return t.h.Broker().Poison.PutPoison(ctx, rec)
}

// ListPoison returns a page of the records matching q, oldest first, and the
// next page's cursor ("" after the last page).
func (t *Transport) ListPoison(ctx context.Context, q transport.PoisonQuery) ([]transport.PoisonRecord, string, error) {
	return t.h.Broker().Poison.ListPoison(ctx, q)
}

// GetPoison returns the record with id.
func (t *Transport) GetPoison(ctx context.Context, id string) (transport.PoisonRecord, bool, error) {
	return t.h.Broker().Poison.GetPoison(ctx, id)
}

// DeletePoison removes the record with id.
func (t *Transport) DeletePoison(ctx context.Context, id string) (bool, error) {
	return t.h.Broker().Poison.DeletePoison(ctx, id)
}

var (
	_ transport.BacklogReporter = (*Transport)(nil)
	_ transport.SystemNamer     = (*Transport)(nil)
)

// Backlog returns how many events of topic wait in the queue of handler:
// queued, and nacked ones waiting for their redelivery (not those being
// handled). It is 0 for a handler with no subscription (its events are not
// kept) and for a replay topic (replays join the handler's event queue). It
// never blocks.
func (t *Transport) Backlog(_ context.Context, handler, topic string) (int64, error) {
	return int64(t.h.Backlog(handler, topic)), nil
}

// System returns "memory", the transport's name in telemetry.
func (t *Transport) System() string { return "memory" }
