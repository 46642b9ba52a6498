package nats

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldbus/herald/transport"
)

// publisher is the message.Publisher of a Transport.
type publisher struct{ t *Transport }

// Publish: see Transport.Publisher.
func (p publisher) Publish(topic string, msgs ...*message.Message) error {
	if len(msgs) > 0 && strings.HasPrefix(topic, replayPrefix) {
		if err := p.t.checkReplayConsumer(msgs[0].Context(), topic); err != nil {
			return err
		}
	}
	switch len(msgs) {
	case 0:
		return nil
	case 1:
		m := msgs[0]
		ctx := m.Context()
		return p.t.withStreams(ctx, func() error {
			f, err := p.t.publishAsync(ctx, topic, m)
			if err != nil {
				return err
			}
			return p.t.waitAck(ctx, m, f)
		})
	}
	return p.t.publishAll(topic, msgs, func(i int) context.Context { return msgs[i].Context() })
}

// Close does nothing: the transport owns the connection.
func (publisher) Close() error { return nil }

// PublishBatch publishes msgs on topic as the Publish of
// [Transport.Publisher] does, but bounded by ctx rather than each message's
// Context: it sends them all, then waits for every PubAck. It returns nil only
// if every message was acknowledged; otherwise the errors (joined) name the
// failed message IDs, and the others may be stored (publish again with the
// same IDs: the stream drops duplicates within the DuplicateWindow). The bus's
// PublishBatch uses it.
func (t *Transport) PublishBatch(ctx context.Context, topic string, msgs []*message.Message) error {
	return t.publishAll(topic, msgs, func(int) context.Context { return ctx })
}

// publishAll sends msgs[i] bounded by ctxOf(i), until one cannot be sent,
// then waits for the PubAcks of those sent. The messages that no stream
// answered are published again once, after the streams are prepared again.
func (t *Transport) publishAll(topic string, msgs []*message.Message, ctxOf func(int) context.Context) error {
	gen := t.gen.Load()
	errs := make([]error, len(msgs))
	all := make([]int, len(msgs))
	for i := range all {
		all[i] = i
	}
	sendErr := t.sendAndWait(topic, msgs, all, ctxOf, errs)
	var again []int
	for i, err := range errs {
		if streamMissing(err) {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		t.streamsLost(gen, errs[again[0]])
		if err := t.prepare(ctxOf(again[0])); err == nil {
			for _, i := range again {
				errs[i] = nil
			}
			sendErr = errors.Join(sendErr, t.sendAndWait(topic, msgs, again, ctxOf, errs))
		}
	}
	return errors.Join(append([]error{sendErr}, errs...)...)
}

// sendAndWait sends msgs[i] for i in which, in order, until one cannot be
// sent (its error is returned), then waits for the PubAck of each one sent
// and sets errs[i].
func (t *Transport) sendAndWait(topic string, msgs []*message.Message, which []int, ctxOf func(int) context.Context, errs []error) error {
	futures := make([]*pubFuture, 0, len(which))
	var sendErr error
	for _, i := range which {
		f, err := t.publishAsync(ctxOf(i), topic, msgs[i])
		if err != nil {
			sendErr = err
			break
		}
		futures = append(futures, f)
	}
	for k, f := range futures {
		i := which[k]
		errs[i] = t.waitAck(ctxOf(i), msgs[i], f)
	}
	return sendErr
}

const replayPrefix = "_replay."

// checkReplayConsumer returns an error wrapping transport.ErrNoHandler unless
// the handler a replay topic belongs to has a consumer for it: without one,
// the stream (interest retention) would drop the replay, or keep it where no
// consumer created later would read it.
func (t *Transport) checkReplayConsumer(ctx context.Context, topic string) error {
	if err := t.prepare(ctx); err != nil {
		return err
	}
	handler := strings.TrimPrefix(topic, replayPrefix)
	rctx, cancel := t.requestCtx(ctx)
	defer cancel()
	err := t.withStreams(rctx, func() error {
		_, err := t.eventsStream().Consumer(rctx, consumerName(handler, topic))
		return err
	})
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("herald/nats: %w: %q has no consumer (subscribe it, then replay)", transport.ErrNoHandler, handler)
	}
	if err != nil {
		return fmt.Errorf("herald/nats: replay to %q: %w", handler, err)
	}
	return nil
}

// publishAsync sends m, once a publish slot is free, and returns its future.
func (t *Transport) publishAsync(ctx context.Context, topic string, m *message.Message) (*pubFuture, error) {
	if t.isClosed() {
		return nil, transport.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := t.prepare(ctx); err != nil {
		return nil, err
	}
	nm, err := t.natsMsg(topic, m)
	if err != nil {
		return nil, err
	}
	select {
	case t.pubSlots <- struct{}{}:
	default:
		select {
		case t.pubSlots <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("herald/nats: publish %s: waiting for a publish slot: %w", m.UUID, ctx.Err())
		case <-t.closed:
			return nil, transport.ErrClosed
		}
	}
	f, err := t.acks.publish(nm)
	if err != nil {
		<-t.pubSlots // not in flight: nothing will release the slot
		switch {
		case errors.Is(err, transport.ErrClosed):
			return nil, fmt.Errorf("herald/nats: publish %s: %w", m.UUID, err)
		case errors.Is(err, nats.ErrMaxPayload):
			err = fmt.Errorf("%w: %w", transport.ErrTooLarge, err)
		}
		return nil, fmt.Errorf("herald/nats: publish %s on %s: %w", m.UUID, nm.Subject, err)
	}
	return f, nil
}

// waitAck waits for the PubAck of m.
func (t *Transport) waitAck(ctx context.Context, m *message.Message, f *pubFuture) error {
	select {
	case <-f.done:
		return t.ackErr(m, f.err)
	case <-ctx.Done():
		return fmt.Errorf("herald/nats: publish %s: waiting for the PubAck: %w", m.UUID, ctx.Err())
	}
}

// ackErr is the error of m's publish whose PubAck came back with err.
func (t *Transport) ackErr(m *message.Message, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, nats.ErrNoResponders) {
		err = fmt.Errorf("%w (no stream captures %s.>: was the transport started, or was stream %q deleted?)",
			err, t.cfg.SubjectPrefix, t.cfg.StreamName)
	}
	return fmt.Errorf("herald/nats: publish %s: %w", m.UUID, err)
}

var _ transport.AsyncPublisher = (*Transport)(nil)

// PublishAsync sends m on topic, pipelined like PublishBatch, and returns
// once it is sent (waiting, honouring ctx, while MaxPendingPublishes publishes
// await their PubAck); done gets the outcome: nil once the stream stored it,
// or the error (no PubAck within PubAckTimeout, the connection lost, the
// transport closed...). It never calls done when it returns an error.
func (t *Transport) PublishAsync(ctx context.Context, topic string, m *message.Message, done func(error)) error {
	if strings.HasPrefix(topic, replayPrefix) {
		if err := t.checkReplayConsumer(ctx, topic); err != nil {
			return err
		}
	}
	f, err := t.publishAsync(ctx, topic, m)
	if err != nil {
		return err
	}
	f.onDone(func(err error) { done(t.ackErr(m, err)) })
	return nil
}

// natsMsg builds the stream message of m on topic: m.UUID travels as
// Nats-Msg-Id, and the Herald-Id header only when it differs from it (the
// receiver restores it from Nats-Msg-Id: see restoreID).
func (t *Transport) natsMsg(topic string, m *message.Message) (*nats.Msg, error) {
	return t.buildMsg(topic, m, true)
}

// buildMsg builds the NATS message of m on topic. For the stream (forStream),
// m.UUID becomes the Nats-Msg-Id header and a Herald-Id metadata entry equal
// to it is left out; otherwise (a core NATS request) the metadata travels
// whole and m.UUID not at all.
func (t *Transport) buildMsg(topic string, m *message.Message, forStream bool) (*nats.Msg, error) {
	if err := validSubject(topic); err != nil {
		return nil, fmt.Errorf("herald/nats: topic: %w: %w", transport.ErrInvalidName, err)
	}
	lean := forStream && m.UUID != ""
	h := make(nats.Header, len(m.Metadata)+1)
	size := len(m.Payload) + len("NATS/1.0\r\n\r\n")
	// A replay of the event carries the Herald-Id left out here: the size
	// check keeps room for it, so that every event published can be replayed.
	reserve := 0
	for k, v := range m.Metadata {
		if reservedKey(k) {
			continue
		}
		if lean && k == transport.KeyID && v == m.UUID {
			reserve = len(k) + len(v) + 4
			continue
		}
		if err := validHeader(k, v); err != nil {
			return nil, fmt.Errorf("herald/nats: message %s: metadata %w", m.UUID, err)
		}
		h[k] = []string{v}
		size += len(k) + len(v) + 4
	}
	if lean {
		h[jetstream.MsgIDHeader] = []string{m.UUID}
		size += len(jetstream.MsgIDHeader) + len(m.UUID) + 4
	}
	limit := int64(t.cfg.MaxPayload)
	if srv := t.nc.MaxPayload(); srv > 0 && (limit == 0 || srv < limit) {
		limit = srv
	}
	if limit > 0 && int64(size+reserve) > limit {
		return nil, fmt.Errorf("%w: message %s is %d bytes with its headers (and a replay's %s), the limit is %d",
			transport.ErrTooLarge, m.UUID, size+reserve, transport.KeyID, limit)
	}
	return &nats.Msg{Subject: t.Subject(t.publishTopic(topic, m)), Header: h, Data: m.Payload}, nil
}

// reservedKey reports whether a metadata key is the transport's, not sent as
// a header: NATS's own headers and the delivery count set on receipt.
func reservedKey(k string) bool {
	return len(k) >= 5 && strings.EqualFold(k[:5], "Nats-") || k == transport.KeyDeliveryCount
}

// validHeader reports whether k: v can travel as a NATS header.
func validHeader(k, v string) error {
	if k == "" {
		return errors.New("with an empty key")
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c == ':' || c >= 0x7f {
			return fmt.Errorf("key %q: a header name cannot contain ':', spaces or control characters", k)
		}
	}
	if strings.IndexByte(v, '\n') >= 0 || strings.IndexByte(v, '\r') >= 0 {
		return fmt.Errorf("%q: a header value cannot contain a line break", k)
	}
	return nil
}
