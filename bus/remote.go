package bus

import (
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/transport"
)

// The remote path: workers read the channels of the transport's watermill
// subscriber, one for the handler's event topic and one for its replays.

func (s *Subscription) startRemote() error {
	var sub message.Subscriber
	var err error
	if h, ok := s.b.cfg.transport.(transport.History); ok && s.cfg.from != nil {
		sub, err = h.SubscriberFrom(s.name, *s.cfg.from) // WithStartFrom
	} else {
		sub, err = s.b.cfg.transport.Subscriber(s.name)
	}
	if err != nil {
		return err
	}
	s.release = append(s.release, func() { _ = sub.Close() })
	fail := func(err error) error {
		s.cancel()
		_ = sub.Close()
		return err
	}
	ks, acrossProcesses := sub.(transport.KeyedSubscriber)
	if s.cfg.keyOrdered && (acrossProcesses || s.cfg.concurrency > 1) {
		// One channel per topic, so that the dispatcher sees the transport's
		// order, with as many messages in flight as the workers and their
		// inboxes hold, so that keys run in parallel. A KeyedSubscriber
		// (NATS partitions) also keeps each key in order across processes;
		// the dispatcher keeps that order within this one.
		window := s.cfg.concurrency * (keyedInbox + 1)
		var events <-chan *message.Message
		if acrossProcesses {
			events, err = ks.SubscribeKeyed(s.ctx, s.event, window)
		} else {
			events, err = subscribeWindow(s, sub, s.event, window)
		}
		if err != nil {
			return fail(err)
		}
		replays, err := subscribeWindow(s, sub, transport.ReplayTopic(s.name), window)
		if err != nil {
			return fail(err)
		}
		s.startKeyedRemote(events, replays)
		return nil
	}
	for range s.cfg.concurrency {
		events, err := sub.Subscribe(s.ctx, s.event)
		if err != nil {
			return fail(err)
		}
		replays, err := sub.Subscribe(s.ctx, transport.ReplayTopic(s.name))
		if err != nil {
			return fail(err)
		}
		var loop func()
		loop = func() { s.runRemote(events, replays, loop) }
		s.goWorker(loop)
	}
	return nil
}

func subscribeWindow(s *Subscription, sub message.Subscriber, topic string, window int) (<-chan *message.Message, error) {
	if ws, ok := sub.(transport.WindowSubscriber); ok {
		return ws.SubscribeWindow(s.ctx, topic, window)
	}
	return sub.Subscribe(s.ctx, topic)
}

func (s *Subscription) runRemote(events, replays <-chan *message.Message, again func()) {
	for {
		select {
		case <-s.stop:
			return
		default:
		}
		msg, ok := s.nextRemote(&events, &replays)
		if !ok {
			return
		}
		s.handleRemote(msg, again)
	}
}

// nextRemote returns the next message of events or replays, forgetting a
// channel once it is closed; false when both are closed or s is stopping.
func (s *Subscription) nextRemote(events, replays *<-chan *message.Message) (*message.Message, bool) {
	for *events != nil || *replays != nil {
		select {
		case msg, ok := <-*events:
			if ok {
				return msg, true
			}
			*events = nil
		case msg, ok := <-*replays:
			if ok {
				return msg, true
			}
			*replays = nil
		case <-s.stop:
			return nil, false
		}
	}
	return nil, false
}

func (s *Subscription) handleRemote(msg *message.Message, again func()) {
	attempt, counted := 1, false
	if n, err := strconv.Atoi(msg.Metadata.Get(transport.KeyDeliveryCount)); err == nil && n > 0 {
		attempt, counted = n, true
	}
	event.Bind(msg, s.name, attempt)
	if counted {
		event.SetDeliveries(msg, attempt)
	}
	s.process(msg, func(failed bool, delay time.Duration) {
		if failed {
			if delay > 0 {
				msg.Metadata.Set(transport.KeyRedeliveryDelay, delay.String())
			}
			msg.Nack()
		}
	}, again)
}
