package nats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldbus/herald/transport"
)

// A handler's life on the server: its durable consumers are created by its
// first Subscribe and stay when its processes stop, so that events wait for
// it. Here: where a new one starts (SubscriberFrom), and how the consumers of
// a handler that is gone are found and deleted (Handlers, DeleteHandler).

var (
	_ transport.History  = (*Transport)(nil)
	_ transport.Handlers = (*Transport)(nil)
)

// SubscriberFrom is [Transport.Subscriber] for a handler that may start in
// the past (transport.History): a consumer it creates for an event topic,
// one the handler name never had, starts with the first event the stream
// still holds that was published at or after from (DeliverByStartTime), or
// with the oldest one when from is the zero time (DeliverAll). A consumer that
// exists keeps its position. What the stream still holds depends on its
// retention: with the default RetentionLimits, every event younger than
// MaxAge; with RetentionInterest, only the events some other handler has not
// acknowledged yet. The replay consumer always starts with new replays.
func (t *Transport) SubscriberFrom(handlerName string, from time.Time) (message.Subscriber, error) {
	sub, err := t.Subscriber(handlerName)
	if err != nil {
		return nil, err
	}
	s := sub.(*subscriber)
	s.from = &startFrom{at: from, used: map[string]bool{}}
	return s, nil
}

// startFrom is where a SubscriberFrom's new consumers start. It applies once
// per topic: a consumer deleted under a running subscriber is created again
// with new events, not the history again.
type startFrom struct {
	at   time.Time
	mu   sync.Mutex
	used map[string]bool // topics whose start was taken
}

// take returns the start for topic, the first time only.
func (f *startFrom) take(topic string) (time.Time, bool) {
	if f == nil || strings.HasPrefix(topic, replayPrefix) {
		return time.Time{}, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.used[topic] {
		return time.Time{}, false
	}
	f.used[topic] = true
	return f.at, true
}

// startFrom returns the deliver policy of a consumer of topic that is new to
// this transport: from the subscriber's start (SubscriberFrom) on an event
// topic, the first time only, else the events published from now on.
func (s *subscriber) startFrom(topic string) (jetstream.DeliverPolicy, *time.Time) {
	at, ok := s.from.take(topic)
	switch {
	case !ok:
		return jetstream.DeliverNewPolicy, nil
	case at.IsZero():
		return jetstream.DeliverAllPolicy, nil
	default:
		at = at.UTC()
		return jetstream.DeliverByStartTimePolicy, &at
	}
}

// consumerDescription is the description of the consumer of (handler,
// topic); Handlers reads the names back from it. The consumers of a topic's
// keyed partitions (see Config.Partitions) name the topic, then the
// partition: keyedAllDescription or keyedOneDescription follows.
const (
	consumerDescription = "Herald handler %q, topic %q"
	keyedAllDescription = " (keyed partitions)"
	keyedOneDescription = " (keyed partition %d)"
)

// describe is the description of the consumer of handler on an internal
// topic (a topic, or one or all of its keyed partitions).
func describe(handler, topic string) string {
	d := fmt.Sprintf(consumerDescription, handler, publicTopic(topic))
	rest, ok := strings.CutPrefix(topic, keyedPrefix)
	if !ok {
		return d
	}
	if strings.HasPrefix(rest, "*.") {
		return d + keyedAllDescription
	}
	p, _, _ := strings.Cut(rest, ".")
	return d + strings.Replace(keyedOneDescription, "%d", p, 1)
}

// handlerOf returns the handler and internal topic of a consumer the
// transport created, and false for any other consumer of the stream.
func handlerOf(info *jetstream.ConsumerInfo) (handler, topic string, ok bool) {
	d := info.Config.Description
	if _, err := fmt.Sscanf(d, consumerDescription, &handler, &topic); err != nil {
		return "", "", false
	}
	switch rest := d[len(fmt.Sprintf(consumerDescription, handler, topic)):]; {
	case rest == "":
	case rest == keyedAllDescription:
		topic = allPartitionsTopic(topic)
	default:
		var p int
		if _, err := fmt.Sscanf(rest, keyedOneDescription, &p); err != nil {
			return "", "", false
		}
		topic = partitionTopic(topic, p)
	}
	return handler, topic, consumerName(handler, topic) == info.Name
}

// Handlers lists the handler names that have durable consumers on the events
// stream (transport.Handlers), whether a process of theirs runs or not,
// sorted by name, each with its topics and the events the stream keeps for
// it (pending and unacknowledged, summed over its consumers, those of keyed
// partitions included: a topic appears once). It reads the
// stream's consumers a page (256) per request.
func (t *Transport) Handlers(ctx context.Context) ([]transport.HandlerInfo, error) {
	byName, err := t.consumers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]transport.HandlerInfo, 0, len(byName))
	for name, infos := range byName {
		h := transport.HandlerInfo{Name: name}
		for _, info := range infos {
			_, topic, _ := handlerOf(info)
			h.Topics = append(h.Topics, publicTopic(topic)) // a partition's is its topic's
			h.Pending += info.NumPending + uint64(info.NumAckPending)
		}
		slices.Sort(h.Topics)
		h.Topics = slices.Compact(h.Topics)
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b transport.HandlerInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// DeleteHandler deletes every durable consumer of handler on the events stream
// (transport.Handlers): those of each event topic (with its keyed
// partitions: see Config.Partitions) and the replay one. With
// RetentionInterest the stream then stops keeping events for it, and drops
// those only it still needed; with the default RetentionLimits the events
// stay until MaxAge, as for every handler. Its poison records stay (purge them with
// the bus's poison queue). found is false if it had no consumer. Call it only
// once no process of the handler runs: a running one creates its consumer
// again, starting with new events.
func (t *Transport) DeleteHandler(ctx context.Context, handler string) (bool, error) {
	if err := validSubject(handler); err != nil {
		return false, fmt.Errorf("herald/nats: handler name: %w: %v", transport.ErrInvalidName, err)
	}
	byName, err := t.consumers(ctx)
	if err != nil {
		return false, err
	}
	rctx, cancel := t.requestCtx(ctx)
	defer cancel()
	found := false
	for _, info := range byName[handler] {
		err := t.eventsStream().DeleteConsumer(rctx, info.Name)
		t.forgetPosition(info.Name) // a handler of this name subscribed later is a new one
		if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return found, fmt.Errorf("herald/nats: delete consumer %q of handler %q: %w", info.Name, handler, err)
		}
		found = found || err == nil
	}
	return found, nil
}

// consumers returns the transport's consumers on the events stream by handler.
func (t *Transport) consumers(ctx context.Context) (map[string][]*jetstream.ConsumerInfo, error) {
	if t.isClosed() {
		return nil, transport.ErrClosed
	}
	if err := t.prepare(ctx); err != nil {
		return nil, err
	}
	rctx, cancel := t.requestCtx(ctx)
	defer cancel()
	l := t.eventsStream().ListConsumers(rctx)
	byName := map[string][]*jetstream.ConsumerInfo{}
	for info := range l.Info() { // read to the end: the lister's goroutine sends without watching ctx
		if h, _, ok := handlerOf(info); ok {
			byName[h] = append(byName[h], info)
		}
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("herald/nats: list consumers of stream %q: %w", t.cfg.StreamName, err)
	}
	return byName, nil
}
