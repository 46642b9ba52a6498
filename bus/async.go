package bus

import (
	"context"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel/trace"

	"github.com/heraldbus/herald/transport"
)

// DefaultAsyncWindow is how many PublishAsync calls may wait for their
// transport's acknowledgement at once, unless [WithAsyncWindow] says.
const DefaultAsyncWindow = 4096

// MaxAsyncWindow is the largest [WithAsyncWindow] accepts.
const MaxAsyncWindow = 1 << 20

// Ack is the outcome of one [PublishAsync]: Done is closed once the transport
// holds the event (Err is then nil) or lost it (Err says why). It is safe for
// concurrent use.
type Ack struct {
	id   string
	done chan struct{}
	err  error
}

// ID returns the event's ID (given with [WithMessageID], or generated), so
// that a caller can correlate the outcome or poll its handlers.
func (a *Ack) ID() string { return a.id }

// Done is closed when the outcome is known.
func (a *Ack) Done() <-chan struct{} { return a.done }

// Err returns the outcome once Done is closed: nil when the transport holds
// the event. Before that it returns nil too: read it after Done.
func (a *Ack) Err() error {
	select {
	case <-a.done:
		return a.err
	default:
		return nil
	}
}

// Wait waits for the outcome, or for ctx to end (the publish goes on; its
// outcome still reaches Done and the bus's error handler).
func (a *Ack) Wait(ctx context.Context) error {
	select {
	case <-a.done:
		return a.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// asyncState is the bus's window of outstanding async publishes.
type asyncState struct {
	slots   chan struct{}
	onError func(id string, err error)
	wg      sync.WaitGroup
}

// WithAsyncWindow bounds how many [PublishAsync] calls may wait for their
// acknowledgement at once (1 to [MaxAsyncWindow], default
// [DefaultAsyncWindow]); when it is full PublishAsync waits, honouring its
// ctx: backpressure instead of unbounded memory.
func WithAsyncWindow(n int) Option {
	return busOption(func(c *config) error { return setInRange(&c.asyncWindow, "async window", n, 1, MaxAsyncWindow) })
}

// WithAsyncErrorHandler sets a function called with the event ID and the
// error of every [PublishAsync] whose event the transport did not take, for
// callers that fire and forget. It runs on the transport's goroutine: it must
// be quick and must not block.
func WithAsyncErrorHandler(fn func(id string, err error)) Option {
	return busOption(func(c *config) error {
		if fn == nil {
			return invalid("nil async error handler")
		}
		c.asyncOnError = fn
		return nil
	})
}

// PublishAsync publishes e as [Publish] does, but returns once the event is
// sent, without waiting for the transport to hold it: the returned [Ack]
// tells when it does (or why it did not), and so does the bus's error handler
// ([WithAsyncErrorHandler]). At most the bus's window ([WithAsyncWindow]) of
// publishes wait for their acknowledgement at once; beyond it PublishAsync
// waits, honouring ctx. Bad input (ErrInvalidEvent, ErrInvalidOption, a closed
// or unstarted bus...) is returned at once, as by Publish, with a nil Ack.
//
// Over NATS the events are pipelined on the connection (the transport's
// transport.AsyncPublisher); on the memory transport, where queued means
// held, the event is queued before PublishAsync returns and its Ack is done
// already. [Bus.Close] waits for outstanding publishes until its ctx ends and
// reports those still unconfirmed.
func PublishAsync[E any](ctx context.Context, b *Bus, e E, opts ...PublishOption) (*Ack, error) {
	et := typeOf[E]()
	if et.err != nil {
		return nil, et.err
	}
	return b.publishAsync(ctx, et, e, opts)
}

func (b *Bus) publishAsync(ctx context.Context, et *eventType, v any, opts []PublishOption) (*Ack, error) {
	meta, payload, pc, err := b.publishable(ctx, et, v, opts)
	if err != nil {
		return nil, err
	}
	a := &Ack{id: meta.ID, done: make(chan struct{})}
	observed := func(error) {}
	if b.obs != nil {
		var span trace.Span
		if t := b.obs.tracing; t != nil {
			ctx, span = t.StartPublish(ctx, meta.Event, 1)
			pc = b.traceMetadata(ctx, pc)
		}
		observed = func(err error) { b.published(ctx, span, et.name, 1, err) }
	}
	if b.local != nil {
		// In process, queued is held: no window, no goroutine.
		err := b.sendLocal(ctx, et.name, b.localEvent(meta, v, payload, pc))
		observed(err)
		if err != nil {
			return nil, err
		}
		if b.tracker != nil {
			b.tracker.queued(meta.Event, true)
		}
		close(a.done)
		return a, nil
	}
	as := &b.async
	select {
	case as.slots <- struct{}{}:
	default:
		select {
		case as.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("herald: publish %s: waiting for the async window: %w", meta.ID, ctx.Err())
		}
	}
	as.wg.Add(1)
	complete := func(err error) {
		observed(err)
		if err == nil && b.tracker != nil {
			b.tracker.queued(meta.Event, false) // done must not block
		}
		a.err = err
		close(a.done)
		<-as.slots
		if err != nil && as.onError != nil {
			as.onError(a.id, err)
		}
		as.wg.Done()
	}
	msg := b.message(ctx, meta, payload, pc)
	if ap, ok := b.cfg.transport.(transport.AsyncPublisher); ok {
		if err := ap.PublishAsync(ctx, et.name, msg, complete); err != nil {
			observed(err)
			<-as.slots
			as.wg.Done()
			return nil, err
		}
		return a, nil
	}
	msg.SetContext(context.WithoutCancel(ctx)) // the caller may be gone before the broker answers
	go func() { complete(b.publisher.Publish(et.name, msg)) }()
	return a, nil
}

// waitAsync waits for the outstanding async publishes until ctx ends, and
// returns an error counting those still unconfirmed then.
func (b *Bus) waitAsync(ctx context.Context) error {
	if len(b.async.slots) == 0 {
		return nil // nothing was outstanding (a late completion's wg.Done is harmless)
	}
	done := make(chan struct{})
	go func() {
		b.async.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	select {
	case <-done: // both ready: the publishes finished
		return nil
	default:
	}
	return fmt.Errorf("herald: %d async publishes not confirmed when Close's ctx ended (their Acks report the outcome): %w",
		len(b.async.slots), ctx.Err())
}
