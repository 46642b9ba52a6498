package bus

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/heraldbus/herald/transport"
)

// A handler's life beyond one process: where a new one starts
// (WithStartFrom), and how one that was removed or renamed is found and its
// state deleted (Handlers, OrphanHandlers, DeleteHandler, Subscription.Delete).

// WithStartFrom makes a handler that never consumed before start from the
// events published at or after from, instead of those published after it
// subscribed; the zero time means every event the transport still holds. It
// acts only when the handler's durable state is created, on its first
// subscription anywhere: a handler that exists keeps its position, whatever
// from says, so the option is safe to leave in code that is deployed again.
//
// It needs a transport that keeps history ([transport.History]). NATS does:
// the stream holds what its retention keeps (with the default
// nats.RetentionLimits, every event younger than MaxAge, a week by default;
// with interest retention, only events another handler has not acknowledged
// yet). Memory keeps no history: there
// the option is accepted and does nothing.
func WithStartFrom(from time.Time) SubscribeOption {
	return subOption(func(c *subConfig) error {
		c.from = &from
		return nil
	})
}

// HandlerInfo describes what a transport keeps for one handler name: its
// topics and how many events wait for it (see [transport.HandlerInfo]).
type HandlerInfo = transport.HandlerInfo

// Handlers lists the handler names the transport keeps state for, sorted by
// name, whether they are subscribed on this bus, in another process, or
// nowhere. On NATS that is every name with a durable consumer on the stream;
// on memory, every name with a running subscriber on the broker. A transport
// that keeps no handler state ([transport.Handlers]) lists none.
func (b *Bus) Handlers(ctx context.Context) ([]HandlerInfo, error) {
	hs, ok := b.cfg.transport.(transport.Handlers)
	if !ok {
		return nil, nil
	}
	return hs.Handlers(ctx)
}

// OrphanHandlers is [Bus.Handlers] without the names subscribed on this bus:
// handlers the transport keeps state (and, on NATS, events) for that have no
// subscriber in this process. A name listed may run in another process; one
// that runs nowhere any more (removed or renamed) is for [Bus.DeleteHandler].
func (b *Bus) OrphanHandlers(ctx context.Context) ([]HandlerInfo, error) {
	all, err := b.Handlers(ctx)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	out := all[:0]
	for _, h := range all {
		if _, here := b.subs[h.Name]; !here {
			out = append(out, h)
		}
	}
	return out, nil
}

// DeleteHandler removes what the transport keeps for the handler name, so
// that it stops keeping events for it: on NATS its durable consumers (one per
// event type and its replay consumer), after which the stream, with interest
// retention, no longer holds events for it (with limits retention, the
// default, events age out at MaxAge whatever the consumers); on memory nothing (no state
// outlives a handler's subscribers). Its poison records stay: purge them with
// [Bus.Poison]. A handler subscribed with the name later starts afresh, with
// new events.
//
// It refuses with [ErrHandlerSubscribed] while the name is subscribed on this
// bus (stop it first, or use [Subscription.Delete]), and returns nil when
// there was nothing to delete. Call it once no process runs the handler: one
// that still runs elsewhere creates its consumer again, starting with new
// events. It honours ctx and needs no Start; on a closed bus it returns
// [ErrClosed]. Invalid names give [ErrInvalidName].
func (b *Bus) DeleteHandler(ctx context.Context, name string) error {
	if err := transport.ValidName(name); err != nil {
		return fmt.Errorf("handler %q: %w", name, err)
	}
	b.mu.Lock()
	if b.state.Load() >= stateClosing {
		b.mu.Unlock()
		return ErrClosed
	}
	if _, here := b.subs[name]; here {
		b.mu.Unlock()
		return fmt.Errorf("%w: %q: stop it first", ErrHandlerSubscribed, name)
	}
	if b.deleting[name] {
		b.mu.Unlock()
		return fmt.Errorf("%w: %q is being deleted", ErrHandlerSubscribed, name)
	}
	b.deleting[name] = true
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.deleting, name)
		b.mu.Unlock()
	}()
	hs, ok := b.cfg.transport.(transport.Handlers)
	if !ok {
		return ctx.Err()
	}
	found, err := hs.DeleteHandler(ctx, name)
	if err != nil {
		return err
	}
	b.cfg.logger.Info("handler deleted", zap.String("handler", name), zap.Bool("found", found))
	return nil
}

// Delete stops the handler ([Subscription.Stop]) and then deletes what the
// transport keeps for its name ([Bus.DeleteHandler]): for a handler that is
// removed for good. Stop's error ([ErrUnhandled] on memory) is returned
// joined with the deletion's. If the handler has not stopped when Stop
// returns (its ctx ended first, or Delete is called from one of the bus's
// handlers), nothing is deleted and the error wraps [ErrHandlerSubscribed]:
// call [Bus.DeleteHandler] once [Subscription.Done] is closed.
func (s *Subscription) Delete(ctx context.Context) error {
	stopErr := s.Stop(ctx)
	select {
	case <-s.done:
	default:
		return fmt.Errorf("%w: %q is still stopping; nothing deleted (stop: %w)", ErrHandlerSubscribed, s.name, stopErr)
	}
	if err := s.b.DeleteHandler(ctx, s.name); err != nil {
		if stopErr != nil {
			return fmt.Errorf("%w; then: %w", stopErr, err)
		}
		return err
	}
	return stopErr
}
