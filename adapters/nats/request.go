package nats

import (
	"context"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldbus/herald/internal/reqinbox"
	"github.com/heraldbus/herald/transport"
)

// Request/reply (bus.Handle, bus.Request) runs on core NATS, not JetStream: a
// request of event name T is a NATS request on "<SubjectPrefix>_request.T",
// outside the events stream's subjects; a handler H answers it from the queue
// group H, so that the processes running H share the requests. The request
// carries the event headers (Herald-Id, Herald-Event, ...; Herald-Id always,
// as a request has no Nats-Msg-Id; a foreign requester may send the ID as
// Nats-Msg-Id instead) and Herald-Deadline; the reply carries the encoded answer and Herald-Handler,
// or, when the handler failed, an empty body and Herald-Error, the error's
// message. A service in another language answers Herald requests by
// subscribing to the subject (in the queue group of its handler name) and
// replying so, and calls a Herald handler by sending such a request.

var _ transport.Requester = (*Transport)(nil)

// RequestSubject returns the NATS subject requests of topic (an event name)
// are sent on.
func (t *Transport) RequestSubject(topic string) string {
	return t.cfg.SubjectPrefix + "_request." + topic
}

// Request sends req to one responder of topic and waits for its reply, until
// ctx ends. A request no responder answers (the server says so at once) is an
// error wrapping transport.ErrNoResponder.
func (t *Transport) Request(ctx context.Context, topic string, req *message.Message) (*message.Message, error) {
	if t.isClosed() {
		return nil, transport.ErrClosed
	}
	// Core NATS has no Nats-Msg-Id: the request's ID travels as Herald-Id.
	m, err := t.buildMsg(topic, req, false)
	if err != nil {
		return nil, err
	}
	m.Subject = t.RequestSubject(topic)
	resp, err := t.nc.RequestMsgWithContext(ctx, m)
	switch {
	case err == nil:
	case errors.Is(err, nats.ErrNoResponders):
		return nil, fmt.Errorf("herald/nats: %w: %s", transport.ErrNoResponder, m.Subject)
	case errors.Is(err, nats.ErrConnectionClosed):
		return nil, fmt.Errorf("herald/nats: request %s: %w", topic, transport.ErrClosed)
	case errors.Is(err, nats.ErrMaxPayload):
		return nil, fmt.Errorf("herald/nats: request %s: %w: %v", topic, transport.ErrTooLarge, err)
	case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
		return nil, fmt.Errorf("herald/nats: request %s: %w (%v)", topic, ctx.Err(), err)
	default:
		return nil, fmt.Errorf("herald/nats: request %s: %w", topic, err)
	}
	wm := message.NewMessage(req.UUID, resp.Data)
	for k, v := range resp.Header {
		if len(v) > 0 {
			wm.Metadata[k] = v[0]
		}
	}
	return wm, nil
}

// Respond subscribes to the requests of topic in the queue group handler.
// The subscription is known to the server when Respond returns. Requests
// wait in the connection's buffer while no worker reads the channel; once
// ctx ends the subscription ends, requests still buffered are lost (their
// requesters see their deadline pass) and one arriving meanwhile is answered
// with an error.
func (t *Transport) Respond(ctx context.Context, handler, topic string) (<-chan transport.Request, error) {
	if t.isClosed() {
		return nil, transport.ErrClosed
	}
	if err := validSubject(topic); err != nil {
		return nil, fmt.Errorf("herald/nats: topic: %w: %w", transport.ErrInvalidName, err)
	}
	r := &responder{t: t, handler: handler, in: reqinbox.New()}
	sub, err := t.nc.QueueSubscribe(t.RequestSubject(topic), handler, r.received)
	if err != nil {
		return nil, fmt.Errorf("herald/nats: respond to %s: %w", topic, err)
	}
	fctx, cancel := t.requestCtx(ctx)
	defer cancel()
	if err := t.nc.FlushWithContext(fctx); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("herald/nats: respond to %s: %w", topic, err)
	}
	context.AfterFunc(ctx, func() {
		_ = sub.Unsubscribe()
		r.in.Close()
	})
	return r.in.C(), nil
}

// responder hands the requests of one subscription to the bus's workers.
type responder struct {
	t       *Transport
	handler string
	in      *reqinbox.Inbox
}

func (r *responder) received(m *nats.Msg) {
	id := m.Header.Get(transport.KeyID)
	if id == "" {
		id = m.Header.Get(jetstream.MsgIDHeader) // a foreign requester's
	}
	wm := message.NewMessage(id, m.Data)
	for k, v := range m.Header {
		if len(v) > 0 && !reservedKey(k) {
			wm.Metadata[k] = v[0]
		}
	}
	restoreID(m.Header, wm.Metadata)
	req := transport.Request{Message: wm, Reply: func(reply *message.Message) error { return r.reply(m, reply) }}
	if taken, _ := r.in.Send(context.Background(), nil, req); taken {
		return
	}
	stopping := message.NewMessage(wm.UUID, nil)
	stopping.Metadata.Set(transport.KeyError, "herald: the handler is stopping")
	_ = r.reply(m, stopping)
}

// reply sends reply to the requester of m. A reply larger than the server
// takes is replaced by an error reply saying so.
func (r *responder) reply(m *nats.Msg, reply *message.Message) error {
	if m.Reply == "" {
		return errors.New("herald/nats: the request has no reply subject")
	}
	out := &nats.Msg{Subject: m.Reply, Header: nats.Header{}, Data: reply.Payload}
	for k, v := range reply.Metadata {
		if err := validHeader(k, v); err != nil {
			return fmt.Errorf("herald/nats: reply metadata %w", err)
		}
		out.Header.Set(k, v)
	}
	out.Header.Set(transport.KeyHandler, r.handler)
	err := r.t.nc.PublishMsg(out)
	if errors.Is(err, nats.ErrMaxPayload) {
		out.Data = nil
		out.Header.Set(transport.KeyError, fmt.Sprintf("herald: the answer is %d bytes, more than the server's max_payload", len(reply.Payload)))
		err = errors.Join(fmt.Errorf("%w: %v", transport.ErrTooLarge, err), r.t.nc.PublishMsg(out))
	}
	return err
}
