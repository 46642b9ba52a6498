package memory

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/heraldbus/herald/transport"
)

// Handler names on the memory broker: a handler's queue exists while one of
// its subscribers (on this transport or a peer) runs, and goes, with its
// events, when the last one leaves. Nothing is kept for a handler that does
// not run, so there is never anything to delete; and there is no history
// either (the transport is no transport.History): a handler starts with the
// events published after it subscribed.

var _ transport.Handlers = (*Transport)(nil)

// Handlers lists the handler names that have a queue on the broker now, that
// is a subscriber running on this transport or one of its peers, sorted by
// name, with their topics and the events waiting in their queues.
func (t *Transport) Handlers(ctx context.Context) ([]transport.HandlerInfo, error) {
	if t.err != nil {
		return nil, t.err
	}
	if t.h.Closed() {
		return nil, fmt.Errorf("herald/memory: %w", transport.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	byName := map[string]*transport.HandlerInfo{}
	for _, g := range t.h.Groups() {
		h := byName[g.Group]
		if h == nil {
			h = &transport.HandlerInfo{Name: g.Group}
			byName[g.Group] = h
		}
		h.Topics = append(h.Topics, g.Topic)
		h.Pending += uint64(g.Len)
	}
	out := make([]transport.HandlerInfo, 0, len(byName))
	for _, h := range byName {
		slices.Sort(h.Topics)
		out = append(out, *h)
	}
	slices.SortFunc(out, func(a, b transport.HandlerInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// DeleteHandler removes nothing and returns found false: the broker keeps no
// state for a handler that does not run, and the queue of one that runs (on a
// peer) belongs to its subscribers, which drop it when they stop.
func (t *Transport) DeleteHandler(ctx context.Context, handler string) (bool, error) {
	if t.err != nil {
		return false, t.err
	}
	if t.h.Closed() {
		return false, fmt.Errorf("herald/memory: %w", transport.ErrClosed)
	}
	if err := transport.ValidName(handler); err != nil {
		return false, fmt.Errorf("herald/memory: handler name: %w", err)
	}
	return false, ctx.Err()
}
