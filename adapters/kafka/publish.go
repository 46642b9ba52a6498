package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldbus/herald/transport"
)

// Headers of the transport's own, never taken from or given to a message's
// metadata: on a redelivery copy (see consumer.go), how many times the event
// was delivered to the handler before, and the time (Unix milliseconds)
// before which it must not be delivered again.
const (
	ownPrefix     = "Herald-Kafka-"
	hdrDeliveries = ownPrefix + "Deliveries"
	hdrNotBefore  = ownPrefix + "Not-Before"
)

const replayPrefix = "_replay."

// reservedKey reports whether a metadata key is the transport's, never sent
// as a header: its own headers and the delivery count set on receipt.
func reservedKey(k string) bool {
	return len(k) >= len(ownPrefix) && strings.EqualFold(k[:len(ownPrefix)], ownPrefix) || k == transport.KeyDeliveryCount
}

// publisher is the message.Publisher of a Transport.
type publisher struct{ t *Transport }

// Publish: see Transport.Publisher.
func (p publisher) Publish(topic string, msgs ...*message.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	return p.t.publish(topic, msgs, (*message.Message).Context)
}

// Close does nothing: the transport owns the client.
func (publisher) Close() error { return nil }

var _ transport.BatchPublisher = (*Transport)(nil)

// PublishBatch publishes msgs on topic as the Publish of
// [Transport.Publisher] does, but bounded by ctx rather than each message's
// Context: it hands them all to the producer, then waits for every ack. It
// returns nil only if every message was acknowledged; otherwise the errors
// (joined) name the failed message IDs, and the others may be stored. The
// bus's PublishBatch uses it.
func (t *Transport) PublishBatch(ctx context.Context, topic string, msgs []*message.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	return t.publish(topic, msgs, func(*message.Message) context.Context { return ctx })
}

// produced is the outcome of one record's produce.
type produced struct {
	done chan struct{}
	err  error
}

// publish produces msgs on topic and waits for their acks, each bounded by
// the context msgCtx gives for it.
func (t *Transport) publish(topic string, msgs []*message.Message, msgCtx func(*message.Message) context.Context) error {
	if t.isClosed() {
		return fmt.Errorf("herald/kafka: publish: %w", transport.ErrClosed)
	}
	if topic == "" {
		return fmt.Errorf("herald/kafka: publish: %w: empty topic", transport.ErrInvalidName)
	}
	first := msgCtx(msgs[0])
	if err := first.Err(); err != nil {
		return err
	}
	kt := t.Topic(topic)
	if strings.HasPrefix(topic, replayPrefix) {
		ok, err := t.topicExists(first, kt)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("herald/kafka: %w: %q has never subscribed (no topic %s: subscribe it, then replay)",
				transport.ErrNoHandler, strings.TrimPrefix(topic, replayPrefix), kt)
		}
	} else if err := t.ensureTopic(first, kt, 0, t.topicConfigs()); err != nil {
		return err
	}
	recs := make([]*kgo.Record, len(msgs))
	for i, m := range msgs {
		r, err := t.record(kt, m)
		if err != nil {
			return err
		}
		recs[i] = r
	}
	outs := make([]produced, len(msgs))
	for i, r := range recs {
		out := &outs[i]
		out.done = make(chan struct{})
		t.cl.Produce(msgCtx(msgs[i]), r, func(_ *kgo.Record, err error) {
			out.err = err
			close(out.done)
		})
	}
	// One ProduceTimeout for the call, for the messages whose ctx has no
	// deadline.
	timeout := time.NewTimer(t.cfg.ProduceTimeout)
	defer timeout.Stop()
	var errs []error
	for i, m := range msgs {
		if err := t.waitProduced(msgCtx(m), m, &outs[i], timeout.C); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// waitProduced waits for the ack of m's record; timeout bounds the wait when
// ctx has no deadline.
func (t *Transport) waitProduced(ctx context.Context, m *message.Message, out *produced, timeout <-chan time.Time) error {
	if _, ok := ctx.Deadline(); ok {
		timeout = nil
	}
	select {
	case <-out.done:
		return t.produceErr(m, out.err)
	case <-ctx.Done():
		return fmt.Errorf("herald/kafka: publish %s: waiting for the broker's ack: %w", m.UUID, ctx.Err())
	case <-timeout:
		return fmt.Errorf("herald/kafka: publish %s: no ack within ProduceTimeout %v: %w", m.UUID, t.cfg.ProduceTimeout, context.DeadlineExceeded)
	case <-t.closed:
		return fmt.Errorf("herald/kafka: publish %s: %w", m.UUID, transport.ErrClosed)
	}
}

// produceErr wraps the error of a produce.
func (t *Transport) produceErr(m *message.Message, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kgo.ErrClientClosed):
		return fmt.Errorf("herald/kafka: publish %s: %w", m.UUID, transport.ErrClosed)
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		return fmt.Errorf("herald/kafka: publish %s: %w: %w", m.UUID, transport.ErrTooLarge, err)
	}
	return fmt.Errorf("herald/kafka: publish %s: %w", m.UUID, err)
}

// record builds the Kafka record of m on the Kafka topic kt.
func (t *Transport) record(kt string, m *message.Message) (*kgo.Record, error) {
	r := &kgo.Record{Topic: kt, Value: m.Payload, Headers: make([]kgo.RecordHeader, 0, len(m.Metadata))}
	size := len(m.Payload)
	for k, v := range m.Metadata {
		if reservedKey(k) {
			continue
		}
		if k == "" {
			return nil, fmt.Errorf("herald/kafka: message %s: %w: metadata with an empty key", m.UUID, transport.ErrInvalidOption)
		}
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
		size += len(k) + len(v) + 4
	}
	if key := m.Metadata.Get(transport.KeyOrderingKey); key != "" {
		r.Key = []byte(key)
		size += len(key)
	}
	if size > t.cfg.MaxMessageBytes {
		return nil, fmt.Errorf("herald/kafka: %w: message %s is %d bytes with its key and headers, the limit is %d",
			transport.ErrTooLarge, m.UUID, size, t.cfg.MaxMessageBytes)
	}
	return r, nil
}
