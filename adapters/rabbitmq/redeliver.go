package rabbitmq

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/transport"
)

// Delayed redelivery without a plugin. A nacked event is published again,
// with confirm, to the fanout exchange "<Prefix>.wait.<delay>", whose one
// queue (a quorum queue of the same name) has that message TTL and the
// default exchange as dead-letter exchange (at-least-once dead-lettering).
// The copy's routing key is the handler's queue name, so when its TTL ends
// the broker moves it back to that queue alone, not to the other handlers.
// Only once the copy is confirmed is the original delivery acked: a crash in
// between delivers the event twice, never zero times. The copy carries the
// deliveries so far in x-herald-deliveries. The delays are NakDelay doubled
// per delivery up to MaxNakDelay: a few wait queues, declared on first use.

// nakDelay is the delay of a nack of a message delivered n times.
func (t *Transport) nakDelay(n int) time.Duration {
	d := t.cfg.NakDelay
	for i := 1; i < n && d < t.cfg.MaxNakDelay; i++ {
		d *= 2
	}
	return min(d, t.cfg.MaxNakDelay)
}

// delay moves h's delivery to the wait queue of its delay and acks it; false
// if it could not (the caller then requeues it at once).
func (p *pump) delay(h held, wm *message.Message) bool {
	t := p.s.t
	n, _ := strconv.Atoi(wm.Metadata.Get(transport.KeyDeliveryCount))
	d := t.nakDelay(n)
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.RequestTimeout)
	defer cancel()
	if err := t.moveToWait(ctx, h.d, p.queue, d, n); err != nil {
		t.cfg.Logger.Warn("delayed redelivery failed; requeued at once", zap.String("queue", p.queue),
			zap.Duration("delay", d), zap.Error(err))
		return false
	}
	if err := p.ch.Ack(h.d.DeliveryTag, false); err != nil {
		// The copy waits: the original comes back too (at least once).
		t.cfg.Logger.Warn("ack after delayed redelivery failed", zap.String("queue", p.queue), zap.Error(err))
	}
	return true
}

// moveToWait publishes a copy of d, delivered n times, to the wait queue of
// delay, addressed to the queue q, and waits for its confirm.
func (t *Transport) moveToWait(ctx context.Context, d amqp.Delivery, q string, delay time.Duration, n int) error {
	name, err := t.waitQueue(ctx, delay)
	if err != nil {
		return err
	}
	h := make(amqp.Table, len(d.Headers)+1)
	for k, v := range d.Headers {
		if !reservedKey(k) {
			h[k] = v
		}
	}
	h[hdrPrior] = int64(n)
	pub := amqp.Publishing{
		Headers: h, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding, DeliveryMode: amqp.Persistent,
		CorrelationId: d.CorrelationId, MessageId: d.MessageId, Timestamp: d.Timestamp, Type: d.Type, AppId: d.AppId,
		Body: d.Body,
	}
	dc, err := t.pub.sendRaw(ctx, name, q, pub)
	if err != nil {
		return err
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("herald/rabbitmq: the copy in %q was not confirmed", name)
	}
	return nil
}

// waitQueue declares the wait exchange and queue of delay, once per
// transport, and returns their name.
func (t *Transport) waitQueue(ctx context.Context, delay time.Duration) (string, error) {
	name := waitName(t.cfg.Prefix, delay)
	t.waitMu.Lock()
	defer t.waitMu.Unlock()
	if t.waitDeclared[name] {
		return name, nil
	}
	err := t.withChannel(ctx, func(ch *amqp.Channel) error {
		if err := ch.ExchangeDeclare(name, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
			return fmt.Errorf("declare wait exchange %q: %w", name, err)
		}
		args := amqp.Table{
			amqp.QueueTypeArg:        amqp.QueueTypeQuorum,
			amqp.QueueMessageTTLArg:  delay.Milliseconds(),
			"x-dead-letter-exchange": "",
			"x-dead-letter-strategy": "at-least-once",
			amqp.QueueOverflowArg:    amqp.QueueOverflowRejectPublish,
		}
		if _, err := ch.QueueDeclare(name, true, false, false, false, args); err != nil {
			return fmt.Errorf("declare wait queue %q: %w", name, err)
		}
		if err := ch.QueueBind(name, "", name, false, nil); err != nil {
			return fmt.Errorf("bind wait queue %q: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	t.waitDeclared[name] = true
	return name, nil
}
