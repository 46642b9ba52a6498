package memory

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/transport"
)

var (
	_ transport.Requester = (*Transport)(nil)
	_ transport.Tracker   = (*Transport)(nil)
)

// Request hands req to one responder of topic on this transport's broker (its
// peers included) and waits for the reply, honouring ctx. Responders of one
// handler name take requests in turn; when several handler names answer a
// topic, the first registered answers. It returns an error wrapping
// transport.ErrNoResponder when none answers topic.
func (t *Transport) Request(ctx context.Context, topic string, req *message.Message) (*message.Message, error) {
	if t.err != nil {
		return nil, t.err
	}
	return t.h.Request(ctx, topic, req)
}

// Respond registers a responder of topic under the name handler; its channel
// is unbuffered (a request waits until a worker takes it) and is closed once
// ctx ends.
func (t *Transport) Respond(ctx context.Context, handler, topic string) (<-chan transport.Request, error) {
	if t.err != nil {
		return nil, t.err
	}
	return t.h.Respond(ctx, handler, topic)
}

// DeliveryStore returns the broker's delivery tracking store, in process
// memory and shared with the transport's peers; the first call sets its ttl.
func (t *Transport) DeliveryStore(ttl time.Duration) (transport.DeliveryStore, error) {
	if t.err != nil {
		return nil, t.err
	}
	return t.h.DeliveryStore(ttl), nil
}
