package nats

import (
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/internal/adapterkit"
)

// Defaults of the zero [Config].
const (
	// DefaultURL is the server dialled when Config.URL is empty.
	DefaultURL = nats.DefaultURL // "nats://127.0.0.1:4222"
	// DefaultStreamName is the events stream when Config.StreamName is empty.
	DefaultStreamName = "HERALD"
	// DefaultSubjectPrefix is the subject prefix when Config.SubjectPrefix is empty.
	DefaultSubjectPrefix = "herald"
	// DefaultMaxAge is how long the events stream keeps an event with
	// RetentionLimits (the default) when Config.MaxAge is zero: a week, so
	// that a handler down over a long weekend misses nothing.
	DefaultMaxAge = 7 * 24 * time.Hour
	// DefaultDuplicateWindow is how long the stream remembers event IDs.
	DefaultDuplicateWindow = 2 * time.Minute
	// DefaultAckWait is the consumers' AckWait.
	DefaultAckWait = 30 * time.Second
	// DefaultMaxDeliver (unlimited) is the consumers' MaxDeliver: poisoning
	// an event that keeps failing is the bus's job, not the server's.
	DefaultMaxDeliver = -1
	// DefaultMaxAckPending is the consumers' MaxAckPending.
	DefaultMaxAckPending = 1000
	// DefaultPrefetch is how many events each worker fetches ahead.
	DefaultPrefetch = 32
	// DefaultNakDelay is the redelivery delay of an event's first nack.
	DefaultNakDelay = time.Second
	// DefaultMaxNakDelay caps the redelivery delay of a nack.
	DefaultMaxNakDelay = time.Minute
	// DefaultMaxPendingPublishes bounds the publishes awaiting a PubAck.
	DefaultMaxPendingPublishes = 4096
	// DefaultPubAckTimeout bounds the wait for a PubAck.
	DefaultPubAckTimeout = 30 * time.Second
	// DefaultConnectTimeout bounds the dial of a server.
	DefaultConnectTimeout = 2 * time.Second
	// DefaultRequestTimeout bounds a JetStream API request.
	DefaultRequestTimeout = 5 * time.Second
	// DefaultPartitions is how many partitions the keyed events of a topic
	// are spread over (see Config.Partitions).
	DefaultPartitions = 8
	// MaxPartitions bounds Config.Partitions.
	MaxPartitions = 1024
)

// Retention says when the events stream deletes an event.
//
// The default, RetentionLimits with a MaxAge of [DefaultMaxAge], keeps a
// window of history: a handler that subscribes later can start in the past
// (bus.WithStartFrom), a handler that is removed holds nothing back, and the
// stream's size is the rate of events times MaxAge, whatever the handlers do.
// The price: a handler that stays down longer than MaxAge misses the events
// that aged out meanwhile. RetentionInterest keeps an event exactly as long as
// a handler needs it, which costs the server a deletion (a write on file
// storage) for every event once its last handler acknowledges it, and keeps
// every event, without bound, for the consumers of a removed handler until
// they are deleted (bus.DeleteHandler).
//
// An existing stream keeps the retention it was created with (the server
// cannot change it): a Config's Retention and MaxAge apply when the transport
// creates the stream.
type Retention int

const (
	// RetentionLimits (the default) keeps events until they are MaxAge old
	// (or the stream's limits end them), acknowledged or not: a handler
	// created later can read them (bus.WithStartFrom), duplicate detection
	// survives server restarts, and the stream can be inspected. An event
	// older than MaxAge is deleted even if a handler that was down never got
	// it: choose MaxAge longer than any outage a handler must survive.
	RetentionLimits Retention = iota
	// RetentionInterest keeps an event until every handler consumer that
	// existed when it was published has acknowledged it (and at most MaxAge,
	// if set). An event published while no handler of its type exists is
	// not kept: no handler subscribed later would receive it anyway. The
	// consumers of a handler that no longer runs keep every later event of
	// its types: delete them (bus.DeleteHandler). Caveat: a server rebuilds
	// its duplicate window from the events it still holds when it restarts,
	// so the ID of an event already acknowledged (deleted) is forgotten; a
	// publish retried across a server restart within the DuplicateWindow (a
	// lost PubAck) can then deliver the event again. Handlers see events at
	// least once anyway; RetentionLimits avoids this.
	RetentionInterest
)

// Config configures a [Transport]. Every zero field means its documented
// default, so Config{} connects to a local server with safe settings.
type Config struct {
	// URL of the NATS server(s), comma separated; default [DefaultURL]. Ignored
	// when Conn is set.
	URL string
	// Conn is an existing connection to use instead of dialling URL. The
	// transport does not own it: Close leaves it open (and leaves its
	// handlers alone). It must stay open while the transport is in use.
	Conn *nats.Conn
	// NATSOptions are passed to nats.Connect after the transport's own
	// (a name, [Config.ConnectTimeout], reconnecting forever), so they can
	// override them: TLS, credentials, nkeys, user and password, reconnect
	// policy. Ignored when Conn is set.
	NATSOptions []nats.Option
	// ConnectTimeout bounds the dial of each server; default
	// [DefaultConnectTimeout], from 1ms to 1 minute. An unreachable server makes
	// [New] fail after at most this long (a refused connection fails at once).
	ConnectTimeout time.Duration
	// RequestTimeout bounds each JetStream API request (stream and consumer
	// management, poison records) made with a ctx that has no deadline;
	// default [DefaultRequestTimeout], from 1ms to 10 minutes.
	RequestTimeout time.Duration

	// StreamName is the events stream; default [DefaultStreamName]. Its
	// poison records go to the stream StreamName+"_POISON". An existing stream
	// is used as it is, after checking that it captures the subjects.
	StreamName string
	// SubjectPrefix is the first token(s) of every subject: events of topic T
	// go on SubjectPrefix+".T", poison records on SubjectPrefix+"_poison.>";
	// default [DefaultSubjectPrefix]. Two transports with different stream
	// names and prefixes on one server never see each other's events.
	SubjectPrefix string
	// Storage of both streams: jetstream.FileStorage (the zero value, the
	// default) or jetstream.MemoryStorage. With memory storage a server
	// restart loses the streams, their consumers, their events and poison
	// records: the transport creates the streams and its consumers again when
	// it finds them missing, and goes on with the events published after.
	Storage jetstream.StorageType
	// Replicas of both streams (and so of their consumers); default 1, at
	// most 5.
	Replicas int
	// Retention of the events stream; default [RetentionLimits] (see
	// [Retention] for the trade-off).
	Retention Retention
	// MaxAge bounds how long the events stream keeps an event. Zero means
	// [DefaultMaxAge] with RetentionLimits and no limit with
	// RetentionInterest (an event lives until every handler has
	// acknowledged it); a negative MaxAge means no limit with either (with
	// RetentionLimits the stream then grows until the server's limits);
	// otherwise from 100ms (the server's minimum) to 10 years (of 365 days).
	MaxAge time.Duration
	// PoisonMaxAge bounds how long poison records are kept; default 0, until
	// they are replayed or purged; otherwise from 100ms to 10 years.
	PoisonMaxAge time.Duration
	// DuplicateWindow is how long the stream remembers event IDs (the
	// Nats-Msg-Id header) to drop a duplicate publish; default
	// [DefaultDuplicateWindow], from 100ms (the server's minimum) to 24 hours
	// (the server keeps every ID of the window in memory), and cut to MaxAge
	// if that is shorter.
	DuplicateWindow time.Duration

	// AckWait is how long the server waits for a handler's ack before it
	// redelivers; default [DefaultAckWait], from 30ms to 24 hours. While an
	// event is held by the transport (prefetched or being handled) it sends
	// progress acks every third of the consumer's AckWait, so a slow handler
	// or a long retry backoff never causes a concurrent duplicate; AckWait
	// matters only when a process dies.
	//
	// The processes of a handler share its consumer, so they share one
	// AckWait: the consumer's, which each process reads back from the server
	// and paces its progress acks by (logging at Warn when it is not this
	// one). A process raises the consumer's AckWait to this one if it is
	// longer, never lowers it: processes still pacing by the longer one
	// would see their events redelivered. To lower it, once every process
	// has the new AckWait, delete the consumer while they run: it is created
	// again from where the handler was, with their AckWait.
	AckWait time.Duration
	// MaxDeliver bounds deliveries of one event to one handler; default
	// [DefaultMaxDeliver] (-1, unlimited): the bus poisons an event that
	// keeps failing, so the server should not drop it. Otherwise 1 to
	// 1 000 000.
	MaxDeliver int
	// MaxAckPending bounds the events of one handler delivered and not yet
	// acknowledged, over all its processes; default [DefaultMaxAckPending],
	// at most 1 000 000.
	MaxAckPending int
	// Prefetch is how many events each worker of a handler fetches ahead;
	// default [DefaultPrefetch], at most 10 000. Prefetched events are
	// progress-acked, and given back (nacked) when the subscriber closes. A
	// worker stuck on one event keeps up to Prefetch events of its handler
	// from other processes.
	Prefetch int
	// NakDelay is the redelivery delay of the first nack of an event that
	// asks for none (the bus's delayed retries ask for their own: see
	// transport.KeyRedeliveryDelay); each further delivery doubles it, up to
	// MaxNakDelay; default
	// [DefaultNakDelay], at most 24 hours. A nack caused by shutdown (the
	// message's context has ended) is redelivered at once, to another process.
	NakDelay time.Duration
	// MaxNakDelay caps the nack redelivery delay; default [DefaultMaxNakDelay],
	// at most 24 hours.
	MaxNakDelay time.Duration

	// MaxPayload bounds the size of a published message (payload plus
	// headers); default 0, the server's max_payload. Larger messages get an
	// error wrapping [transport.ErrTooLarge] before anything is sent. At most 64 MiB
	// (the largest max_payload a server accepts).
	MaxPayload int
	// MaxPendingPublishes bounds the publishes waiting for their PubAck;
	// Publish waits (honouring its ctx) while that many are in flight;
	// default [DefaultMaxPendingPublishes], at most 1 000 000.
	MaxPendingPublishes int
	// PubAckTimeout is how long a publish waits for its PubAck when its ctx
	// has no earlier deadline; default [DefaultPubAckTimeout], from 1ms to
	// 10 minutes.
	PubAckTimeout time.Duration

	// Partitions is how many partitions the events of a topic that carry an
	// ordering key (bus.WithOrderingKey) are spread over, so that a handler
	// ordering by key (bus.WithOrderingByKey) keeps each key in order across
	// all its processes; default [DefaultPartitions], at most
	// [MaxPartitions]; -1 turns partitions off. A keyed event of topic T goes
	// on the subject "<SubjectPrefix>._keyed.<p>.T", p being
	// transport.KeyPartition(key, Partitions); events without a key, and
	// replays, stay on "<SubjectPrefix>.T".
	//
	// Cost on the server: each handler ordering by key has a consumer per
	// partition (each with MaxAckPending 1) besides its consumer of T and its
	// replay one: Partitions+2 consumers per topic; any other handler has one
	// more consumer per topic, for every partition of T (3 in all). More
	// partitions let more keys of a handler run at once (at most Partitions
	// over all its processes), for more consumers on the server. With -1, a
	// keyed event goes on "<SubjectPrefix>.T" and its key is ordered within
	// one process only.
	//
	// Every process publishing or consuming on the stream must use the same
	// Partitions: a handler ordering by key with fewer partitions than a
	// publisher misses the keyed events of the partitions it lacks. To change
	// it on a live system, drain first: stop the publishers, let the handlers
	// empty their backlog, then start every process with the new value. See
	// the package doc.
	Partitions int

	// Logger receives the transport's logs: connection changes, stream
	// creation, fetch errors; never a line per event. Default: no logs.
	Logger *zap.Logger
}

// ErrUnsupportedServer is wrapped by the error of [Transport.Start] when the
// server is older than 2.9 or has JetStream disabled.
var ErrUnsupportedServer = errors.New("herald/nats: unsupported NATS server")

func invalid(format string, args ...any) error { return adapterkit.Invalid("nats", format, args...) }

// withDefaults validates c and fills its zero fields.
func (c Config) withDefaults() (Config, error) {
	if c.URL == "" {
		c.URL = DefaultURL
	}
	if c.StreamName == "" {
		c.StreamName = DefaultStreamName
	}
	if err := validStreamName(c.StreamName + "_POISON"); err != nil {
		return c, invalid("StreamName: %w", err)
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultSubjectPrefix
	}
	if err := validSubject(c.SubjectPrefix); err != nil {
		return c, invalid("SubjectPrefix: %w", err)
	}
	if c.Storage != jetstream.FileStorage && c.Storage != jetstream.MemoryStorage {
		return c, invalid("Storage %d", c.Storage)
	}
	if c.Retention != RetentionInterest && c.Retention != RetentionLimits {
		return c, invalid("Retention %d", c.Retention)
	}
	const day = 24 * time.Hour
	// A negative MaxAge (no age limit) is outside Fill's ranges: set
	// aside, then restored.
	noAge := c.MaxAge < 0
	switch {
	case noAge:
		c.MaxAge = 0
	case c.MaxAge == 0 && c.Retention == RetentionLimits:
		c.MaxAge = DefaultMaxAge
	}
	d := adapterkit.Field[time.Duration]
	if err := adapterkit.Fill("nats",
		d("ConnectTimeout", &c.ConnectTimeout, DefaultConnectTimeout, time.Millisecond, time.Minute),
		d("RequestTimeout", &c.RequestTimeout, DefaultRequestTimeout, time.Millisecond, 10*time.Minute),
		d("MaxAge", &c.MaxAge, 0, 100*time.Millisecond, 10*365*day),
		d("PoisonMaxAge", &c.PoisonMaxAge, 0, 100*time.Millisecond, 10*365*day),
		d("DuplicateWindow", &c.DuplicateWindow, DefaultDuplicateWindow, 100*time.Millisecond, day),
		d("AckWait", &c.AckWait, DefaultAckWait, 30*time.Millisecond, day),
		d("NakDelay", &c.NakDelay, DefaultNakDelay, 0, day),
		d("MaxNakDelay", &c.MaxNakDelay, DefaultMaxNakDelay, 0, day),
		d("PubAckTimeout", &c.PubAckTimeout, DefaultPubAckTimeout, time.Millisecond, 10*time.Minute),
	); err != nil {
		return c, err
	}
	if noAge {
		c.MaxAge = -1
	}
	c.MaxNakDelay = max(c.MaxNakDelay, c.NakDelay)
	if c.MaxAge > 0 && c.DuplicateWindow > c.MaxAge {
		c.DuplicateWindow = c.MaxAge
	}
	n := adapterkit.Field[int]
	if err := adapterkit.Fill("nats",
		n("Replicas", &c.Replicas, 1, 0, 5),
		n("MaxAckPending", &c.MaxAckPending, DefaultMaxAckPending, 0, 1_000_000),
		n("Prefetch", &c.Prefetch, DefaultPrefetch, 0, 10_000),
		n("MaxPayload", &c.MaxPayload, 0, 0, 64<<20),
		n("MaxPendingPublishes", &c.MaxPendingPublishes, DefaultMaxPendingPublishes, 0, 1_000_000),
	); err != nil {
		return c, err
	}
	switch {
	case c.Partitions == 0:
		c.Partitions = DefaultPartitions
	case c.Partitions < -1:
		return c, invalid("Partitions %d < -1", c.Partitions)
	case c.Partitions > MaxPartitions:
		return c, invalid("Partitions %d > %d", c.Partitions, MaxPartitions)
	}
	switch {
	case c.MaxDeliver == 0:
		c.MaxDeliver = DefaultMaxDeliver
	case c.MaxDeliver < -1:
		return c, invalid("MaxDeliver %d < -1", c.MaxDeliver)
	case c.MaxDeliver > 1_000_000:
		return c, invalid("MaxDeliver %d > 1000000", c.MaxDeliver)
	}
	for i, o := range c.NATSOptions {
		if o == nil {
			return c, invalid("nil NATSOptions[%d]", i)
		}
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c, nil
}
