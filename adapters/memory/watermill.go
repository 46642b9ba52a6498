package memory

import (
	"context"
	"fmt"
	"maps"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Publisher returns a watermill publisher on t. Publish queues each message for
// every group subscribed to the topic (see [Transport.Send]); it waits with the
// message's context. A message larger than the maximum size
// ([WithMaxMessageSize]) is refused with an error wrapping [ErrTooLarge], as a
// NATS server would refuse it.
func (t *Transport) Publisher() message.Publisher { return publisher{t} }

type publisher struct{ t *Transport }

func (p publisher) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		size := len(m.Payload)
		for k, v := range m.Metadata {
			size += len(k) + len(v)
		}
		if size > p.t.b.cfg.maxSize {
			return fmt.Errorf("%w: message %q is %d bytes, the limit is %d", ErrTooLarge, m.UUID, size, p.t.b.cfg.maxSize)
		}
		d := &Delivery{ID: m.UUID, Payload: m.Payload, Metadata: maps.Clone(m.Metadata)}
		if err := p.t.Send(m.Context(), topic, d); err != nil {
			return err
		}
	}
	return nil
}

// Close does nothing: the transport owns the broker.
func (p publisher) Close() error { return nil }

// Subscriber returns a watermill subscriber that consumes as the group
// groupName: every Subscribe call is one more member sharing the group's
// events. It sends one message at a time per Subscribe and waits for its Ack or
// Nack; a nacked message is redelivered after the redelivery delay.
func (t *Transport) Subscriber(groupName string) (message.Subscriber, error) {
	if t.isClosed() {
		return nil, ErrClosed
	}
	return &subscriber{t: t, group: groupName, closing: make(chan struct{})}, nil
}

type subscriber struct {
	t       *Transport
	group   string
	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup
}

func (s *subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	q, err := s.t.Join(s.group, topic)
	if err != nil {
		return nil, err
	}
	out := make(chan *message.Message)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(out)
		defer q.Leave()
		for {
			var it Item
			select {
			case it = <-q.C():
			case <-ctx.Done():
				return
			case <-s.closing:
				return
			case <-q.Done():
				return
			}
			msg := message.NewMessage(it.ID, it.Payload)
			maps.Copy(msg.Metadata, it.Metadata)
			msg.SetContext(ctx)
			select {
			case out <- msg:
			case <-ctx.Done():
				q.Requeue(it)
				return
			case <-s.closing:
				q.Requeue(it)
				return
			case <-q.Done():
				return
			}
			select {
			case <-msg.Acked():
			case <-msg.Nacked():
				q.Nack(it)
			case <-ctx.Done():
				q.Requeue(it)
				return
			case <-s.closing:
				q.Requeue(it)
				return
			case <-q.Done():
				return
			}
		}
	}()
	return out, nil
}

// Close ends every subscription of s, closes their channels and waits for
// their goroutines. Unacknowledged messages go back to their queues.
func (s *subscriber) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}
