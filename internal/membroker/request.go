package membroker

import (
	"context"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/internal/reqinbox"
	"github.com/heraldbus/herald/transport"
)

// Request/reply in process: each topic has groups of responders (one group
// per handler name); a request goes to the first group registered for its
// topic, to its members in turn.

type responders struct {
	mu     sync.Mutex
	topics map[string][]*respGroup
}

type respGroup struct {
	name    string
	members []*responder
	next    int
}

// responder is one Respond call.
type responder = reqinbox.Inbox

// Respond registers a responder of topic in the group handler; its channel is
// closed once ctx ends.
func (h *Handle) Respond(ctx context.Context, handler, topic string) (<-chan transport.Request, error) {
	if h.Closed() {
		return nil, errClosed
	}
	rr := &h.b.rr
	r := reqinbox.New()
	rr.mu.Lock()
	if rr.topics == nil {
		rr.topics = map[string][]*respGroup{}
	}
	var g *respGroup
	for _, gg := range rr.topics[topic] {
		if gg.name == handler {
			g = gg
		}
	}
	if g == nil {
		g = &respGroup{name: handler}
		rr.topics[topic] = append(rr.topics[topic], g)
	}
	g.members = append(g.members, r)
	rr.mu.Unlock()
	context.AfterFunc(ctx, func() {
		rr.leave(topic, g, r)
		r.Close()
	})
	return r.C(), nil
}

func (rr *responders) leave(topic string, g *respGroup, r *responder) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	for i, m := range g.members {
		if m == r {
			g.members = append(g.members[:i], g.members[i+1:]...)
			break
		}
	}
	if len(g.members) > 0 {
		return
	}
	gs := rr.topics[topic]
	for i, gg := range gs {
		if gg == g {
			rr.topics[topic] = append(gs[:i:i], gs[i+1:]...)
			break
		}
	}
	if len(rr.topics[topic]) == 0 {
		delete(rr.topics, topic)
	}
}

// pick returns the next responder of topic, or nil if it has none.
func (rr *responders) pick(topic string) *responder {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	gs := rr.topics[topic]
	if len(gs) == 0 {
		return nil
	}
	g := gs[0]
	r := g.members[g.next%len(g.members)]
	g.next++
	return r
}

// Request hands req to a responder of topic and waits for its reply. A
// responder that leaves before taking req is skipped for another.
func (h *Handle) Request(ctx context.Context, topic string, req *message.Message) (*message.Message, error) {
	reply := make(chan *message.Message, 1)
	r := transport.Request{Message: req, Reply: func(m *message.Message) error {
		select {
		case reply <- m:
			return nil
		default:
			return fmt.Errorf("herald/memory: request %s replied to twice", req.UUID)
		}
	}}
	for {
		if h.Closed() {
			return nil, errClosed
		}
		resp := h.b.rr.pick(topic)
		if resp == nil {
			return nil, fmt.Errorf("herald/memory: %w: %s", transport.ErrNoResponder, topic)
		}
		sent, err := resp.Send(ctx, h.b.done, r)
		if err != nil {
			return nil, fmt.Errorf("herald/memory: request %s: %w", topic, err)
		}
		if sent {
			break
		}
	}
	select {
	case m := <-reply:
		return m, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("herald/memory: request %s: %w", topic, ctx.Err())
	case <-h.b.done:
		return nil, errClosed
	}
}
