package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldbus/herald/transport"
)

// Subscriber returns a watermill subscriber that consumes as the handler
// handlerName, in the consumer group GroupPrefix+handlerName. Its
// Subscribe(ctx, topic) joins the group on the topic's Kafka topic (one group
// member per handler name and topic in a process, shared by every Subscribe
// call of that topic) and returns a channel of its records:
//
//   - Every handler name gets every event of its topic (a group of its
//     own); the processes of one name share the topic's partitions; events
//     published while no process of the name runs wait in the topic. A name
//     that never consumed the topic starts at Config.StartFrom (by default,
//     with the events published after its first Subscribe began).
//   - Each channel gives one message at a time and the next only after the
//     previous one is acked or nacked, unless it was opened with
//     SubscribeWindow(ctx, topic, n): then up to n, in partition order, each
//     settled whenever its receiver acks or nacks it. The Subscribe calls of
//     one topic share the member's records: n calls with a window of one
//     handle n records at once, of any partition.
//   - A partition's offset is committed up to its lowest record not yet
//     settled: an acked record, and every record before it, is never
//     delivered to this handler again, except after a crash between the ack
//     and the next commit (each CommitInterval).
//   - Nack: the record is delivered again by this member after NakDelay
//     (doubling with each delivery up to MaxNakDelay), up to
//     LocalRedeliveries times, while its partition's commit point waits
//     for it and the records behind it flow on. After that it is copied to
//     the handler's replay topic with its redelivery time, and counts as
//     settled once the copy is stored; the copy is delivered, to any process
//     of the handler, once that time has come. When the message's context
//     has ended (shutdown), the record stays uncommitted, and the
//     partition's next owner gets it at once.
//   - A received message has UUID = its Herald-Id header (or
//     "<topic>-<partition>-<offset>"), every header as metadata except the
//     transport's own, and [transport.KeyDeliveryCount] = the deliveries of
//     this event to this handler that the transport knows of (1 after a
//     crash). Its context is Subscribe's ctx.
//
// The channel closes when ctx ends or the subscriber closes; when the last
// channel of a topic closes, its member commits and leaves the group. Close
// does so for every topic and waits for the subscriber's goroutines.
// Subscriber fails with [transport.ErrClosed] on a closed transport.
func (t *Transport) Subscriber(handlerName string) (message.Subscriber, error) {
	return t.subscriber(handlerName, nil)
}

var _ transport.History = (*Transport)(nil)

// SubscriberFrom is Subscriber, except that a handler name that never
// consumed a topic begins at from (transport.History, bus.WithStartFrom):
// with the first record at or after it, or, for the zero time, with the
// oldest record the topic still holds; it overrides Config.StartFrom. A
// group that has consumed keeps its position.
func (t *Transport) SubscriberFrom(handlerName string, from time.Time) (message.Subscriber, error) {
	start := StartEarliest()
	if !from.IsZero() {
		start = StartAt(from)
	}
	return t.subscriber(handlerName, &start)
}

func (t *Transport) subscriber(handlerName string, start *StartPosition) (message.Subscriber, error) {
	if err := transport.ValidName(handlerName); err != nil {
		return nil, fmt.Errorf("herald/kafka: handler name: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.isClosed() {
		return nil, fmt.Errorf("herald/kafka: subscriber %q: %w", handlerName, transport.ErrClosed)
	}
	s := &subscriber{t: t, handler: handlerName, start: start, consumers: map[string]*consumer{}}
	t.subs[s] = struct{}{}
	return s, nil
}

type subscriber struct {
	t       *Transport
	handler string
	start   *StartPosition // from SubscriberFrom; nil: Config.StartFrom

	mu        sync.Mutex
	closed    bool
	consumers map[string]*consumer // by topic; a stopped one is replaced
	all       []*consumer          // every consumer started, for Close to wait for
}

var _ transport.WindowSubscriber = (*subscriber)(nil)

func (s *subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	return s.SubscribeWindow(ctx, topic, 1)
}

// SubscribeWindow is Subscribe with up to window messages handed out before
// they are settled (transport.WindowSubscriber), in partition order.
func (s *subscriber) SubscribeWindow(ctx context.Context, topic string, window int) (<-chan *message.Message, error) {
	if window < 1 {
		return nil, fmt.Errorf("herald/kafka: %w: window %d < 1", transport.ErrInvalidOption, window)
	}
	if topic == "" {
		return nil, fmt.Errorf("herald/kafka: subscribe: %w: empty topic", transport.ErrInvalidName)
	}
	if err := s.t.Start(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.t.isClosed() {
		return nil, fmt.Errorf("herald/kafka: subscribe %q to %s: %w", s.handler, topic, transport.ErrClosed)
	}
	for range 2 {
		c := s.consumers[topic]
		if c == nil {
			var err error
			if c, err = s.newConsumer(ctx, topic); err != nil {
				return nil, err
			}
			s.consumers[topic] = c
			s.all = append(s.all, c)
		}
		if ch, ok := c.attach(ctx, window); ok {
			return ch, nil
		}
		delete(s.consumers, topic) // it stopped meanwhile: start another
	}
	return nil, fmt.Errorf("herald/kafka: subscribe %q to %s: the consumer stopped twice while joining", s.handler, topic)
}

// Close stops every consumer of the subscriber (each commits what was
// settled and leaves its group) and waits for their goroutines, also when
// another Close started first.
func (s *subscriber) Close() error {
	s.mu.Lock()
	s.closed = true
	cs := slices.Clone(s.all)
	clear(s.consumers)
	s.mu.Unlock()
	for _, c := range cs {
		c.quitOnce.Do(func() { close(c.quit) })
	}
	for _, c := range cs {
		c.wg.Wait()
	}
	s.t.mu.Lock()
	delete(s.t.subs, s)
	s.t.mu.Unlock()
	return nil
}

// newConsumer prepares the topic and the group's start position, then
// starts the group member of (s.handler, topic).
func (s *subscriber) newConsumer(ctx context.Context, topic string) (*consumer, error) {
	t := s.t
	kt := t.Topic(topic)
	replay := topic == transport.ReplayTopic(s.handler)
	if err := t.ensureTopic(ctx, kt, 0, t.topicConfigs()); err != nil {
		return nil, err
	}
	if !replay {
		// Nacked events are copied there: it must exist before the first.
		if err := t.ensureTopic(ctx, t.Topic(transport.ReplayTopic(s.handler)), 0, t.topicConfigs()); err != nil {
			return nil, err
		}
	}
	group := t.Group(s.handler)
	start := t.cfg.StartFrom
	if s.start != nil {
		start = *s.start
	}
	if replay {
		start = StartEarliest() // every record there is this handler's
	}
	if err := t.initOffsets(ctx, group, kt, start); err != nil {
		return nil, err
	}
	c := newConsumer(s, topic, kt)
	cl, err := kgo.NewClient(t.cfg.clientOpts(
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(kt),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(c.onRevoked),
		kgo.OnPartitionsLost(c.onLost),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(t.cfg.SessionTimeout),
		kgo.HeartbeatInterval(min(3*time.Second, t.cfg.SessionTimeout/3)),
		kgo.FetchMaxWait(time.Second),
	)...)
	if err != nil {
		return nil, fmt.Errorf("herald/kafka: consumer of %q on %s: %w", s.handler, kt, err)
	}
	c.cl = cl
	c.start()
	return c, nil
}

// initOffsets commits the start position of group on the partitions of kt
// that have no committed offset yet, while the group has no member (a
// simple commit). If another process's member joined first, it did the
// same, and its commits stand.
//
// The position is the first record at or after a time: the start of this
// call for StartNew, which is before any event published after Subscribe
// returns (a record's timestamp is its producer's clock: processes whose
// clocks disagree by more than the time between two such calls may skip
// or repeat a few events in that race). StartEarliest commits nothing: the
// members' reset offset is the oldest record.
func (t *Transport) initOffsets(ctx context.Context, group, kt string, start StartPosition) error {
	if start.kind == 1 {
		return nil
	}
	at := time.Now()
	if start.kind == 2 {
		at = start.at
	}
	ctx, cancel := t.requestCtx(ctx)
	defer cancel()
	fetched, err := t.adm.FetchOffsetsForTopics(ctx, group, kt)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return fmt.Errorf("herald/kafka: committed offsets of group %s on %s: %w", group, kt, err)
	}
	missing := map[int32]bool{}
	fetched.Each(func(o kadm.OffsetResponse) {
		if o.Topic == kt && o.At < 0 {
			missing[o.Partition] = true
		}
	})
	if len(missing) == 0 && err == nil {
		return nil
	}
	listed, err := t.adm.ListOffsetsAfterMilli(ctx, at.UnixMilli(), kt)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return fmt.Errorf("herald/kafka: offsets of %s at %v: %w", kt, at, err)
	}
	commit := kadm.Offsets{}
	listed.Each(func(o kadm.ListedOffset) {
		if o.Topic == kt && (missing[o.Partition] || len(fetched) == 0) {
			commit.AddOffset(kt, o.Partition, o.Offset, -1)
		}
	})
	resp, err := t.adm.CommitOffsets(ctx, group, commit)
	if err == nil {
		err = resp.Error()
	}
	if err != nil && !errors.Is(err, kerr.UnknownMemberID) && !errors.Is(err, kerr.IllegalGeneration) &&
		!errors.Is(err, kerr.RebalanceInProgress) {
		return fmt.Errorf("herald/kafka: start position of group %s on %s: %w", group, kt, err)
	}
	return nil
}
