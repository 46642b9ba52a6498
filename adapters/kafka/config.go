package kafka

import (
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/internal/adapterkit"
)

// Defaults of the zero [Config].
const (
	// DefaultBroker is the seed broker dialled when Config.Brokers is empty.
	DefaultBroker = "127.0.0.1:9092"
	// DefaultTopicPrefix is the first part of every topic name.
	DefaultTopicPrefix = "herald."
	// DefaultGroupPrefix is the first part of every consumer group ID.
	DefaultGroupPrefix = "herald."
	// DefaultPartitions is the partition count of the topics the transport
	// creates: one, so that a topic keeps one order, as on NATS (see
	// Config.Partitions).
	DefaultPartitions = 1
	// DefaultMaxMessageBytes bounds a published record: Kafka's default
	// max.message.bytes, less the batch overhead.
	DefaultMaxMessageBytes = 1 << 20
	// DefaultPrefetch is how many records a consumer holds ahead of its
	// handler.
	DefaultPrefetch = 256
	// DefaultLocalRedeliveries is how many times a nacked event is
	// redelivered from memory before it moves to the replay topic.
	DefaultLocalRedeliveries = 3
	// DefaultNakDelay is the redelivery delay of an event's first nack.
	DefaultNakDelay = time.Second
	// DefaultMaxNakDelay caps the redelivery delay of a nack.
	DefaultMaxNakDelay = time.Minute
	// DefaultCommitInterval is the least time between two offset commits of
	// one consumer.
	DefaultCommitInterval = 100 * time.Millisecond
	// DefaultRevokeTimeout bounds how long a consumer that loses partitions
	// in a rebalance waits for its events in flight.
	DefaultRevokeTimeout = 15 * time.Second
	// DefaultSessionTimeout is the consumer group session timeout: how long
	// the group waits for a member that stopped heartbeating (a crashed
	// process) before it gives its partitions to others.
	DefaultSessionTimeout = 45 * time.Second
	// DefaultRequestTimeout bounds an admin request (topics, offsets) and a
	// poison record operation made with a ctx that has no deadline.
	DefaultRequestTimeout = 10 * time.Second
	// DefaultProduceTimeout bounds the wait for the broker's ack of a
	// publish whose ctx has no earlier deadline.
	DefaultProduceTimeout = 30 * time.Second
)

// StartPosition is where a handler name that never consumed a topic begins:
// the consumer group's initial offset. It applies only while the group has
// no committed offset for the topic; from then on the group resumes where it
// stopped. The zero value is [StartNew].
type StartPosition struct {
	kind int // 0 new, 1 earliest, 2 at time
	at   time.Time
}

// StartNew (the default) starts a new handler name with the events published
// after its first Subscribe began, as on NATS and in memory.
func StartNew() StartPosition { return StartPosition{} }

// StartEarliest starts a new handler name with the oldest event the topic
// still holds: the topic's history is replayed to it.
func StartEarliest() StartPosition { return StartPosition{kind: 1} }

// StartAt starts a new handler name with the first event whose Kafka
// timestamp is at or after t. t must not be zero.
func StartAt(t time.Time) StartPosition { return StartPosition{kind: 2, at: t} }

// String describes p.
func (p StartPosition) String() string {
	switch p.kind {
	case 1:
		return "earliest"
	case 2:
		return "at " + p.at.UTC().Format(time.RFC3339Nano)
	default:
		return "new"
	}
}

// Config configures a [Transport]. Every zero field means its documented
// default, so Config{} talks to a broker on 127.0.0.1:9092 with safe
// settings.
type Config struct {
	// Brokers are the seed brokers, "host:port"; default [DefaultBroker].
	Brokers []string
	// ClientOptions are added to the options of every franz-go client the
	// transport makes (after its own, so they can override them): TLS, SASL,
	// a client ID, dial settings. Do not pass options that change the group
	// or commit behaviour (ConsumerGroup, ConsumeTopics, autocommit): the
	// transport's guarantees rest on its own.
	ClientOptions []kgo.Opt

	// TopicPrefix is prepended to an event name to make its topic; default
	// [DefaultTopicPrefix]. A name with characters Kafka refuses in a topic
	// (anything outside [a-zA-Z0-9._-]) has them replaced and a hash of the
	// name appended. Replays and redeliveries of handler H go to the topic of
	// "_replay.H", poison records to TopicPrefix+"_poison". At most 100
	// bytes, of the characters Kafka allows in a topic name.
	TopicPrefix string
	// GroupPrefix is prepended to a handler name to make its consumer group
	// ID; default [DefaultGroupPrefix]. At most 100 bytes, no control
	// characters.
	GroupPrefix string
	// Partitions of the topics the transport creates; default
	// [DefaultPartitions] (1: a topic keeps one order, and the replicas of a
	// handler take turns rather than share it). With more, replicas of a
	// handler share a topic's partitions, and order holds per partition:
	// events with the same ordering key (the record key) stay in order,
	// events without one are spread and keep no order. At most 10 000. An
	// existing topic is used as it is.
	Partitions int
	// ReplicationFactor of the topics the transport creates; default 0, the
	// broker's default.replication.factor. At most 32.
	ReplicationFactor int
	// TopicConfigs are the configs of the event and replay topics the
	// transport creates (retention.ms, min.insync.replicas, ...).
	TopicConfigs map[string]string

	// StartFrom is where a handler name that never consumed a topic begins;
	// default [StartNew].
	StartFrom StartPosition

	// MaxMessageBytes bounds a published record (payload, key and headers);
	// default [DefaultMaxMessageBytes], from 1 KiB to 64 MiB. A larger event
	// gets an error wrapping [transport.ErrTooLarge] before anything is
	// sent. The broker's max.message.bytes must be at least this plus 1 KiB.
	MaxMessageBytes int
	// ProduceTimeout bounds the wait for the broker's ack of a publish whose
	// ctx has no earlier deadline; default [DefaultProduceTimeout], from 1ms
	// to 10 minutes.
	ProduceTimeout time.Duration
	// RequestTimeout bounds admin requests (topic creation, offsets) and
	// poison record operations made with a ctx that has no deadline;
	// default [DefaultRequestTimeout], from 1ms to 10 minutes.
	RequestTimeout time.Duration

	// Prefetch is how many records a consumer (one per handler name and
	// topic in a process) holds that its workers have not taken yet;
	// default [DefaultPrefetch], at most 100 000.
	Prefetch int
	// LocalRedeliveries is how many times a nacked event is delivered again
	// by the consumer that holds it, after the nack delay, before it is moved
	// to the handler's replay topic; default [DefaultLocalRedeliveries], -1
	// for none (moved at the first nack), at most 100. While it is held, its
	// partition's commit point stays at it (a crash then redelivers the
	// events after it too); once moved, it comes back after the events
	// published behind it.
	LocalRedeliveries int
	// NakDelay is the redelivery delay of the first nack of an event; each
	// further delivery doubles it, up to MaxNakDelay; default
	// [DefaultNakDelay], at most 24 hours.
	NakDelay time.Duration
	// MaxNakDelay caps the nack redelivery delay; default
	// [DefaultMaxNakDelay], at most 24 hours.
	MaxNakDelay time.Duration
	// CommitInterval is the least time between two offset commits of one
	// consumer; default [DefaultCommitInterval], at most 1 minute. A crash
	// redelivers the events settled since the last commit.
	CommitInterval time.Duration
	// RevokeTimeout bounds how long a consumer that loses partitions in a
	// rebalance waits for their events in flight to settle before it
	// commits and lets go; default [DefaultRevokeTimeout], from 1ms to 10
	// minutes. An event still in flight then is handled again by the
	// partition's new owner.
	RevokeTimeout time.Duration
	// SessionTimeout of the consumer groups; default
	// [DefaultSessionTimeout], within the broker's
	// group.min/max.session.timeout.ms (6s to 5 minutes by default).
	SessionTimeout time.Duration

	// Logger receives the transport's logs (commit and fetch errors,
	// rebalances); never a line per event. Default: no logs.
	Logger *zap.Logger
}

func invalid(format string, args ...any) error { return adapterkit.Invalid("kafka", format, args...) }

// withDefaults validates c and fills its zero fields.
func (c Config) withDefaults() (Config, error) {
	if len(c.Brokers) == 0 {
		c.Brokers = []string{DefaultBroker}
	}
	for i, b := range c.Brokers {
		if strings.TrimSpace(b) == "" || strings.ContainsAny(b, " \t\r\n,") {
			return c, invalid("Brokers[%d] %q is not a host:port", i, b)
		}
	}
	for i, o := range c.ClientOptions {
		if o == nil {
			return c, invalid("nil ClientOptions[%d]", i)
		}
	}
	if c.TopicPrefix == "" {
		c.TopicPrefix = DefaultTopicPrefix
	}
	if len(c.TopicPrefix) > 100 || !legalTopic(c.TopicPrefix) {
		return c, invalid("TopicPrefix %q: at most 100 bytes of [a-zA-Z0-9._-]", c.TopicPrefix)
	}
	if c.GroupPrefix == "" {
		c.GroupPrefix = DefaultGroupPrefix
	}
	if len(c.GroupPrefix) > 100 || strings.ContainsFunc(c.GroupPrefix, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return c, invalid("GroupPrefix %q: at most 100 bytes, no control characters", c.GroupPrefix)
	}
	if c.StartFrom.kind == 2 && c.StartFrom.at.IsZero() {
		return c, invalid("StartFrom: StartAt with a zero time")
	}
	for k, v := range c.TopicConfigs {
		if k == "" || strings.ContainsAny(k+v, "\r\n\x00") {
			return c, invalid("TopicConfigs %q=%q", k, v)
		}
	}
	const day = 24 * time.Hour
	d := adapterkit.Field[time.Duration]
	if err := adapterkit.Fill("kafka",
		d("ProduceTimeout", &c.ProduceTimeout, DefaultProduceTimeout, time.Millisecond, 10*time.Minute),
		d("RequestTimeout", &c.RequestTimeout, DefaultRequestTimeout, time.Millisecond, 10*time.Minute),
		d("NakDelay", &c.NakDelay, DefaultNakDelay, 0, day),
		d("MaxNakDelay", &c.MaxNakDelay, DefaultMaxNakDelay, 0, day),
		d("CommitInterval", &c.CommitInterval, DefaultCommitInterval, 0, time.Minute),
		d("RevokeTimeout", &c.RevokeTimeout, DefaultRevokeTimeout, time.Millisecond, 10*time.Minute),
		d("SessionTimeout", &c.SessionTimeout, DefaultSessionTimeout, time.Millisecond, time.Hour),
	); err != nil {
		return c, err
	}
	c.MaxNakDelay = max(c.MaxNakDelay, c.NakDelay)
	n := adapterkit.Field[int]
	if err := adapterkit.Fill("kafka",
		n("Partitions", &c.Partitions, DefaultPartitions, 1, 10_000),
		n("ReplicationFactor", &c.ReplicationFactor, 0, 1, 32),
		n("MaxMessageBytes", &c.MaxMessageBytes, DefaultMaxMessageBytes, 1<<10, 64<<20),
		n("Prefetch", &c.Prefetch, DefaultPrefetch, 1, 100_000),
	); err != nil {
		return c, err
	}
	switch {
	case c.LocalRedeliveries == 0:
		c.LocalRedeliveries = DefaultLocalRedeliveries
	case c.LocalRedeliveries == -1:
		c.LocalRedeliveries = 0
	case c.LocalRedeliveries < -1 || c.LocalRedeliveries > 100:
		return c, invalid("LocalRedeliveries %d: -1 to 100", c.LocalRedeliveries)
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c, nil
}
