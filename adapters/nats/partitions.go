package nats

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/transport"
)

// Keyed partitions: an event with an ordering key goes on one of
// Config.Partitions subjects of its topic, chosen by the key's hash, rather
// than on the topic's own subject:
//
//	<SubjectPrefix>.T                 events of T without a key
//	<SubjectPrefix>._keyed.<p>.T      events of T with a key k, p = transport.KeyPartition(k, Partitions)
//
// Event names never start with '_' (replay topics start with "_replay."), so
// no topic's subject is a partition subject. Inside the transport a
// partition is a topic of its own ("_keyed.<p>.T", and "_keyed.*.T" for all
// of them), consumed by a durable consumer of its own, so that everything
// that applies to a consumer (its position, its re-creation, WithStartFrom,
// Handlers, DeleteHandler) applies to them too:
//
//   - A handler ordering by key (SubscribeKeyed) consumes T and each
//     partition of T, the latter with MaxAckPending 1: the server hands out a
//     partition's next event, to any process of the handler, only once the
//     previous one is acknowledged; an event nacked, or held by a process that
//     died, is the partition's next one. Partitions run in parallel.
//   - Any other handler (Subscribe, SubscribeWindow) consumes T and
//     "_keyed.*.T": one consumer for every partition, since a consumer of
//     nats-server 2.9 has a single filter subject.
//
// Every pump of one Subscribe call hands out on the same channel.

// keyedPrefix starts the internal topic of a partition.
const keyedPrefix = "_keyed."

// feed is a topic a Subscribe call consumes, and how many of its messages
// may be handed out before they are settled.
type feed struct {
	topic  string
	window int
}

// partitioned reports whether the keyed events of topic go on partitions:
// partitions are on and topic is an event name (not a replay topic).
func (t *Transport) partitioned(topic string) bool {
	return t.cfg.Partitions > 0 && !strings.HasPrefix(topic, "_")
}

// partitionTopic is the internal topic of partition p of topic.
func partitionTopic(topic string, p int) string {
	return keyedPrefix + strconv.Itoa(p) + "." + topic
}

// allPartitionsTopic is the internal topic of every partition of topic.
func allPartitionsTopic(topic string) string { return keyedPrefix + "*." + topic }

// publishTopic is the topic m goes on: its key's partition if it has a key
// and topic is partitioned, else topic.
func (t *Transport) publishTopic(topic string, m *message.Message) string {
	if key := m.Metadata.Get(transport.KeyOrderingKey); key != "" && t.partitioned(topic) {
		return partitionTopic(topic, transport.KeyPartition(key, t.cfg.Partitions))
	}
	return topic
}

// publicTopic is the topic an internal one belongs to: T for a partition of
// T, topic itself otherwise.
func publicTopic(topic string) string {
	rest, ok := strings.CutPrefix(topic, keyedPrefix)
	if !ok {
		return topic
	}
	if _, t, ok := strings.Cut(rest, "."); ok {
		return t
	}
	return topic
}

// maxAckPending is the MaxAckPending of the consumers of an internal topic:
// 1 for a partition (one event of its keys in flight), else the Config's.
func (t *Transport) maxAckPending(topic string) int {
	if rest, ok := strings.CutPrefix(topic, keyedPrefix); ok && !strings.HasPrefix(rest, "*.") {
		return 1
	}
	return t.cfg.MaxAckPending
}

// unkeyedFeeds are the feeds of a handler consuming topic without ordering
// by key: topic, and all its partitions at once.
func (t *Transport) unkeyedFeeds(topic string, window int) []feed {
	feeds := []feed{{topic, window}}
	if t.partitioned(topic) {
		feeds = append(feeds, feed{allPartitionsTopic(topic), window})
	}
	return feeds
}

// consumerTopics are the internal topics whose consumers a handler of topic
// may have: topic, all its partitions, and each partition.
func (t *Transport) consumerTopics(topic string) []string {
	topics := []string{topic}
	if t.partitioned(topic) {
		topics = append(topics, allPartitionsTopic(topic))
		for p := range t.cfg.Partitions {
			topics = append(topics, partitionTopic(topic, p))
		}
	}
	return topics
}

// EventSubjects returns the subjects the events of topic are published on,
// for a tool that reads them from the stream (such as herald tail): the
// topic's own, "<SubjectPrefix>.<topic>", and, with partitions on (see
// Config.Partitions), the wildcard of its keyed partitions,
// "<SubjectPrefix>._keyed.*.<topic>". topic may hold wildcards; ">" alone
// gives one subject, which covers both. Reading both subjects with one
// consumer needs nats-server 2.10 or newer (FilterSubjects).
func (t *Transport) EventSubjects(topic string) []string {
	subjects := []string{t.Subject(topic)}
	if topic != ">" && t.partitioned(topic) {
		subjects = append(subjects, t.Subject(allPartitionsTopic(topic)))
	}
	return subjects
}

var _ transport.KeyedSubscriber = (*subscriber)(nil)

// SubscribeKeyed is SubscribeWindow for a handler that orders by key
// (transport.KeyedSubscriber): the events of topic without a key come up to
// window at a time, and those with a key through one consumer per partition
// (Config.Partitions), each shared by every process of the handler with
// MaxAckPending 1: a key's events come one at a time over all the
// processes, in publish order, and a nacked event (or one whose process died,
// after AckWait) comes again before the later ones of its partition. With
// partitions off (-1) it is SubscribeWindow, and keys are ordered within one
// process only.
func (s *subscriber) SubscribeKeyed(ctx context.Context, topic string, window int) (<-chan *message.Message, error) {
	if err := validSubject(topic); err != nil {
		return nil, fmt.Errorf("herald/nats: topic: %w: %w", transport.ErrInvalidName, err)
	}
	if !s.t.partitioned(topic) {
		return s.open(ctx, []feed{{topic, window}})
	}
	feeds := make([]feed, 0, 1+s.t.cfg.Partitions)
	feeds = append(feeds, feed{topic, window})
	for p := range s.t.cfg.Partitions {
		feeds = append(feeds, feed{partitionTopic(topic, p), 1})
	}
	ch, err := s.open(ctx, feeds)
	if err == nil {
		s.checkMode(ctx, topic, true)
	}
	return ch, err
}

// checkMode warns, once per topic, when the handler has a consumer of the
// other way of consuming topic's keyed events (ordering by key or not): left
// by an earlier version of the handler, no process consumes it, yet with
// interest retention the stream keeps every keyed event for it.
func (s *subscriber) checkMode(ctx context.Context, topic string, keyed bool) {
	if !s.t.partitioned(topic) {
		return
	}
	if _, done := s.checked.LoadOrStore(topic, true); done {
		return
	}
	other, mode := partitionTopic(topic, 0), "ordering by key"
	if keyed {
		other, mode = allPartitionsTopic(topic), "not ordering by key"
	}
	name := consumerName(s.handler, other)
	rctx, cancel := s.t.requestCtx(ctx)
	defer cancel()
	if _, err := s.t.eventsStream().Consumer(rctx, name); err != nil {
		return // not found, or not known: nothing to say
	}
	s.t.cfg.Logger.Warn("the handler has consumers of keyed events from when it was "+mode+
		"; once no process of it runs that way, delete them, or the stream keeps every keyed event for them",
		zap.String("handler", s.handler), zap.String("topic", topic), zap.String("consumer", name),
		zap.String("stream", s.t.cfg.StreamName),
		zap.String("hint", "delete the consumers whose description names this handler and topic \"_keyed.*."+topic+
			"\" (not ordering by key) or \"_keyed.<p>."+topic+"\" (ordering by key), e.g. with the nats CLI: nats consumer rm"))
}
