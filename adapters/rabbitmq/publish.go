package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldbus/herald/transport"
)

// publisher is the message.Publisher of a Transport: a few confirm-mode
// channels, each reopened on the current connection once it is lost.
type publisher struct {
	t     *Transport
	next  atomic.Uint32
	slots []*pubSlot
}

// pubSlot is one confirm-mode channel; ch is nil until first use and after
// it was lost.
type pubSlot struct {
	mu sync.Mutex
	ch *amqp.Channel
}

func newPublisher(t *Transport) *publisher {
	p := &publisher{t: t, slots: make([]*pubSlot, t.cfg.PublisherChannels)}
	for i := range p.slots {
		p.slots[i] = &pubSlot{}
	}
	return p
}

// channel returns the slot's channel, opening a confirm-mode one if needed.
func (s *pubSlot) channel(ctx context.Context, l *link) (*amqp.Channel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil && !s.ch.IsClosed() {
		return s.ch, nil
	}
	s.ch = nil
	ch, err := l.channel(ctx)
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("confirm mode: %w", err)
	}
	s.ch = ch
	return ch, nil
}

// drop forgets ch if it is still the slot's channel.
func (s *pubSlot) drop(ch *amqp.Channel) {
	s.mu.Lock()
	if s.ch == ch {
		s.ch = nil
	}
	s.mu.Unlock()
	_ = ch.Close()
}

func (p *publisher) close() {
	for _, s := range p.slots {
		s.mu.Lock()
		if s.ch != nil {
			_ = s.ch.Close() // nacks the confirms still awaited: their publishes fail
			s.ch = nil
		}
		s.mu.Unlock()
	}
}

// Close does nothing: the transport owns the connection.
func (p *publisher) Close() error { return nil }

// Publish: see Transport.Publisher.
func (p *publisher) Publish(topic string, msgs ...*message.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if strings.HasPrefix(topic, replayPrefix) {
		if err := p.t.checkReplayQueue(msgs[0].Context(), topic); err != nil {
			return err
		}
	}
	if len(msgs) == 1 {
		return p.publishOne(msgs[0].Context(), topic, msgs[0])
	}
	return p.publishMany(topic, msgs, func(m *message.Message) context.Context { return m.Context() })
}

// PublishBatch publishes msgs on topic as the Publish of
// [Transport.Publisher] does, bounded by ctx rather than each message's
// Context: it sends them all, pipelined, then waits for every confirm. It
// returns nil only if the broker confirmed every message; otherwise the
// errors (joined) name the failed message IDs, and the others may be stored.
func (t *Transport) PublishBatch(ctx context.Context, topic string, msgs []*message.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if strings.HasPrefix(topic, replayPrefix) {
		if err := t.checkReplayQueue(ctx, topic); err != nil {
			return err
		}
	}
	return t.pub.publishMany(topic, msgs, func(*message.Message) context.Context { return ctx })
}

func (p *publisher) publishOne(ctx context.Context, topic string, m *message.Message) error {
	ctx, cancel := p.publishCtx(ctx)
	defer cancel()
	dc, err := p.send(ctx, topic, m)
	if err != nil {
		return err
	}
	return p.await(ctx, m, dc)
}

func (p *publisher) publishMany(topic string, msgs []*message.Message, ctxOf func(*message.Message) context.Context) error {
	type sent struct {
		m      *message.Message
		ctx    context.Context
		cancel context.CancelFunc
		dc     *amqp.DeferredConfirmation
	}
	all := make([]sent, 0, len(msgs))
	defer func() {
		for _, s := range all {
			s.cancel()
		}
	}()
	var errs []error
	for _, m := range msgs {
		ctx, cancel := p.publishCtx(ctxOf(m))
		dc, err := p.send(ctx, topic, m)
		if err != nil {
			cancel()
			errs = append(errs, err)
			break // in order: nothing after a failed message
		}
		all = append(all, sent{m, ctx, cancel, dc})
	}
	for _, s := range all {
		if err := p.await(s.ctx, s.m, s.dc); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// publishCtx bounds ctx by PublishTimeout when it has no earlier deadline.
func (p *publisher) publishCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx == nil {
		ctx = context.Background()
	}
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= p.t.cfg.PublishTimeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, p.t.cfg.PublishTimeout)
}

// send publishes m to the events exchange on a confirm channel and returns
// its deferred confirm. A channel found closed before the message was sent is
// replaced, and the message sent on the new one.
func (p *publisher) send(ctx context.Context, topic string, m *message.Message) (*amqp.DeferredConfirmation, error) {
	if p.t.isClosed() {
		return nil, fmt.Errorf("herald/rabbitmq: publish %s: %w", m.UUID, transport.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("herald/rabbitmq: publish %s: %w", m.UUID, err)
	}
	if err := validRoutingKey(topic); err != nil {
		return nil, fmt.Errorf("herald/rabbitmq: publish %s: topic: %w", m.UUID, err)
	}
	pub, err := p.t.amqpMsg(m)
	if err != nil {
		return nil, err
	}
	if err := p.t.prepare(ctx); err != nil {
		return nil, p.t.closedOr(err) // prefixed by prepare
	}
	dc, err := p.sendRaw(ctx, p.t.exchange(), topic, pub)
	if err != nil {
		return nil, fmt.Errorf("herald/rabbitmq: publish %s: %w", m.UUID, p.t.closedOr(err))
	}
	return dc, nil
}

// sendRaw publishes pub to exchange with key on a confirm channel and
// returns its deferred confirm. A channel found closed before the message
// was sent is replaced, and the message sent on the new one.
func (p *publisher) sendRaw(ctx context.Context, exchange, key string, pub amqp.Publishing) (*amqp.DeferredConfirmation, error) {
	slot := p.slots[int(p.next.Add(1))%len(p.slots)]
	for {
		ch, err := slot.channel(ctx, p.t.link)
		if err != nil {
			return nil, err
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, pub)
		if errors.Is(err, amqp.ErrClosed) {
			slot.drop(ch) // lost before the message went out: on the next channel
			continue
		}
		if err != nil {
			return nil, err
		}
		return dc, nil
	}
}

// await waits for m's confirm.
func (p *publisher) await(ctx context.Context, m *message.Message, dc *amqp.DeferredConfirmation) error {
	ok, err := dc.WaitContext(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("herald/rabbitmq: publish %s: waiting for the broker's confirm: %w", m.UUID, err)
	case !ok && p.t.isClosed():
		return fmt.Errorf("herald/rabbitmq: publish %s: %w", m.UUID, transport.ErrClosed)
	case !ok:
		return fmt.Errorf("herald/rabbitmq: publish %s: not confirmed: the broker refused it or the connection was lost (it may be stored: publish again)", m.UUID)
	}
	return nil
}

// closedOr returns ErrClosed if the transport is closed, err otherwise.
func (t *Transport) closedOr(err error) error {
	if t.isClosed() && !errors.Is(err, transport.ErrClosed) {
		return fmt.Errorf("%w: %w", err, transport.ErrClosed)
	}
	return err
}

const replayPrefix = "_replay."

// checkReplayQueue returns an error wrapping transport.ErrNoHandler unless
// the replay queue of the handler a replay topic names exists: without it,
// the exchange would drop the replay.
func (t *Transport) checkReplayQueue(ctx context.Context, topic string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	handler := strings.TrimPrefix(topic, replayPrefix)
	q := t.QueueName(handler, topic)
	err := t.withChannel(ctx, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		return err
	})
	if isNotFound(err) {
		return fmt.Errorf("herald/rabbitmq: %w: %q has no replay queue (subscribe it, then replay)", transport.ErrNoHandler, handler)
	}
	if err != nil {
		return t.closedOr(err) // prefixed by withChannel
	}
	return nil
}

// amqpMsg builds the AMQP message of m.
func (t *Transport) amqpMsg(m *message.Message) (amqp.Publishing, error) {
	h := make(amqp.Table, len(m.Metadata))
	size := len(m.Payload) + len(m.UUID)
	for k, v := range m.Metadata {
		if reservedKey(k) {
			continue
		}
		if len(k) > 255 {
			return amqp.Publishing{}, fmt.Errorf("herald/rabbitmq: message %s: metadata key of %d bytes (at most 255)", m.UUID, len(k))
		}
		h[k] = v
		size += len(k) + len(v) + 6
	}
	if size > t.cfg.MaxMessageSize {
		return amqp.Publishing{}, fmt.Errorf("herald/rabbitmq: %w: message %s is %d bytes with its headers, the limit is %d",
			transport.ErrTooLarge, m.UUID, size, t.cfg.MaxMessageSize)
	}
	return amqp.Publishing{
		Headers:      h,
		ContentType:  m.Metadata.Get(transport.KeyContentType),
		DeliveryMode: amqp.Persistent,
		MessageId:    m.UUID,
		Body:         m.Payload,
	}, nil
}

// reservedKey reports whether a metadata key is not sent as a header: the
// broker's and the transport's own (lower-case "x-...": x-death,
// x-delivery-count, x-herald-...; an application's "X-Tenant" travels) and
// the delivery count, set on receipt.
func reservedKey(k string) bool {
	return strings.HasPrefix(k, "x-") || k == transport.KeyDeliveryCount
}
