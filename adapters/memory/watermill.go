package memory

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/internal/adapterkit"
	"github.com/heraldbus/herald/internal/membroker"
	"github.com/heraldbus/herald/transport"
)

// Publisher returns a watermill publisher on t. Publish queues each message for
// every handler name subscribed to the topic, waiting with the message's
// context while a queue is full. A message larger than the maximum size
// ([WithMaxMessageSize]) is refused with an error wrapping
// transport.ErrTooLarge, as a NATS server would refuse it.
func (t *Transport) Publisher() message.Publisher { return publisher{t} }

type publisher struct{ t *Transport }

func (p publisher) Publish(topic string, msgs ...*message.Message) error {
	if p.t.err != nil {
		return p.t.err
	}
	limit := p.t.h.Config().MaxSize
	for _, m := range msgs {
		size := len(m.Payload)
		for k, v := range m.Metadata {
			size += len(k) + len(v)
		}
		if size > limit {
			return fmt.Errorf("herald/memory: message %q is %d bytes, the limit is %d: %w", m.UUID, size, limit, transport.ErrTooLarge)
		}
		d := &membroker.Delivery{ID: m.UUID, Payload: m.Payload, Metadata: maps.Clone(m.Metadata)}
		if err := p.t.h.Send(m.Context(), topic, d); err != nil {
			return err
		}
	}
	return nil
}

// Close does nothing: the transport owns the broker.
func (p publisher) Close() error { return nil }

// Subscriber returns a watermill subscriber that consumes as the handler name
// handler: every Subscribe call is one more member sharing the name's events.
// It sends one message at a time per Subscribe and waits for its Ack or Nack
// (see [transport.WindowSubscriber] for more at once); a nacked message comes
// back after the delay the bus asked for ([transport.KeyRedeliveryDelay]), or
// else the redelivery delay, without holding a slot meanwhile. Messages carry
// transport.KeyDeliveryCount.
func (t *Transport) Subscriber(handler string) (message.Subscriber, error) {
	if t.err != nil {
		return nil, t.err
	}
	if t.h.Closed() {
		return nil, fmt.Errorf("herald/memory: %w", transport.ErrClosed)
	}
	return &subscriber{t: t, group: handler}, nil
}

var _ transport.WindowSubscriber = (*subscriber)(nil)

type subscriber struct {
	t     *Transport
	group string
	feeds adapterkit.Feeds
}

func (s *subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	return s.SubscribeWindow(ctx, topic, 1)
}

// SubscribeWindow hands out up to window messages before they are settled.
func (s *subscriber) SubscribeWindow(ctx context.Context, topic string, window int) (<-chan *message.Message, error) {
	if s.feeds.Closed() {
		return nil, fmt.Errorf("herald/memory: %w", transport.ErrClosed)
	}
	window = max(window, 1)
	q, err := s.t.h.Join(s.group, topic)
	if err != nil {
		return nil, err
	}
	out := make(chan *message.Message)
	slots := make(chan struct{}, window)
	var inflight sync.WaitGroup
	exit := make(chan struct{})
	done := make(chan struct{}) // closed when ctx ends, s closes or the loop exits
	closing := s.feeds.Closing()
	watch := func() {
		defer close(done)
		select {
		case <-ctx.Done():
		case <-closing:
		case <-exit:
		}
	}
	feed := func() {
		defer q.Leave()
		defer inflight.Wait()
		defer close(out)
		defer close(exit)
		for {
			select {
			case slots <- struct{}{}:
			case <-done:
				return
			}
			it, ok := q.Next(done)
			if !ok {
				return
			}
			msg := message.NewMessage(it.ID, it.Payload)
			maps.Copy(msg.Metadata, it.Metadata)
			msg.Metadata[transport.KeyDeliveryCount] = strconv.Itoa(1 + it.Redeliveries)
			msg.SetContext(ctx)
			select {
			case out <- msg:
			case <-done:
				q.Requeue(it)
				return
			}
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				defer func() { <-slots }()
				select {
				case <-msg.Acked():
				case <-msg.Nacked():
					d, _ := transport.RedeliveryDelay(msg)
					q.Nack(it, d)
				case <-done:
					q.Requeue(it)
				}
			}()
		}
	}
	if err := s.feeds.Start(watch, feed); err != nil {
		q.Leave()
		return nil, fmt.Errorf("herald/memory: %w", err)
	}
	return out, nil
}

// Close ends every subscription of s, closes their channels and waits for
// their goroutines. Unsettled messages go back to their queues.
func (s *subscriber) Close() error {
	s.feeds.Close()
	return nil
}
