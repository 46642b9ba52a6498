package rabbitmq

import (
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/internal/adapterkit"
)

// Defaults of the zero [Config].
const (
	// DefaultURL is the broker dialled when Config.URL is empty.
	DefaultURL = "amqp://guest:guest@127.0.0.1:5672/"
	// DefaultPrefix is the first part of every exchange and queue name when
	// Config.Prefix is empty.
	DefaultPrefix = "herald"
	// DefaultPrefetch is how many deliveries each worker's channel holds
	// unacknowledged (basic.qos).
	DefaultPrefetch = 32
	// DefaultNakDelay is the redelivery delay of an event's first nack.
	DefaultNakDelay = time.Second
	// DefaultMaxNakDelay caps the redelivery delay of a nack.
	DefaultMaxNakDelay = time.Minute
	// DefaultPublishTimeout bounds a publish (the wait for a connection and
	// for the broker's confirm) whose ctx has no earlier deadline.
	DefaultPublishTimeout = 30 * time.Second
	// DefaultConnectTimeout bounds the dial of the broker.
	DefaultConnectTimeout = 5 * time.Second
	// DefaultRequestTimeout bounds a declaration or a poison store call whose
	// ctx has no deadline.
	DefaultRequestTimeout = 10 * time.Second
	// DefaultReconnectWait is the first wait before dialling again after the
	// connection was lost; it doubles up to DefaultMaxReconnectWait.
	DefaultReconnectWait = 100 * time.Millisecond
	// DefaultMaxReconnectWait caps the wait between two dials.
	DefaultMaxReconnectWait = 5 * time.Second
	// DefaultMaxMessageSize is RabbitMQ's own default max_message_size.
	DefaultMaxMessageSize = 128 << 20
	// DefaultPublisherChannels is how many confirm-mode channels publishes
	// are spread over.
	DefaultPublisherChannels = 4
)

// Config configures a [Transport]. Every zero field means its documented
// default, so Config{} connects to a local broker as guest with safe settings.
// Durations and counts out of their range make [New] fail with an error
// wrapping [transport.ErrInvalidOption].
type Config struct {
	// URL of the broker (amqp:// or amqps://, with credentials and vhost);
	// default [DefaultURL].
	URL string
	// AMQP is passed to amqp091-go's DialConfig: TLS, SASL mechanisms,
	// heartbeat, client properties. Its Dial, when nil, is a dialer bounded by
	// ConnectTimeout.
	AMQP amqp.Config
	// ConnectTimeout bounds each dial of the broker; default
	// [DefaultConnectTimeout], from 1ms to 1 minute.
	ConnectTimeout time.Duration
	// RequestTimeout bounds declarations (exchange, queues, bindings) and each
	// poison store call when their ctx has no deadline; default
	// [DefaultRequestTimeout], from 1ms to 10 minutes.
	RequestTimeout time.Duration
	// ReconnectWait is the first wait before dialling again once the
	// connection is lost; it doubles up to MaxReconnectWait. Default
	// [DefaultReconnectWait], from 1ms to 1 minute.
	ReconnectWait time.Duration
	// MaxReconnectWait caps the wait between dials; default
	// [DefaultMaxReconnectWait], at most 10 minutes, at least ReconnectWait.
	MaxReconnectWait time.Duration

	// Prefix starts every name the transport declares: the events exchange
	// "<Prefix>.events", the handler queues "<Prefix>.q.<handler>/<topic>...",
	// the wait queues "<Prefix>.wait.<delay>" and the poison stream
	// "<Prefix>.poison"; default [DefaultPrefix]. Transports with different
	// prefixes on one vhost never see each other's events. At most 100 bytes,
	// a valid event name (see transport.ValidName).
	Prefix string
	// Prefetch is how many deliveries each worker's channel holds
	// unacknowledged (basic.qos), at least the window of a windowed
	// subscription; default [DefaultPrefetch], at most 65535. A stuck worker
	// keeps up to Prefetch events of its handler from the other processes.
	Prefetch int
	// NakDelay is the redelivery delay of the first nack of an event; each
	// further delivery doubles it, up to MaxNakDelay; default
	// [DefaultNakDelay], at most 24 hours. A nacked event waits in the wait
	// queue of its delay (a quorum queue with that message TTL, dead-lettered
	// back to the handler's queue: no plugin). A nack caused by shutdown (the
	// message's context has ended) is requeued at once, to any process.
	NakDelay time.Duration
	// MaxNakDelay caps the nack redelivery delay; default
	// [DefaultMaxNakDelay], at most 24 hours.
	MaxNakDelay time.Duration

	// PublishTimeout bounds a publish whose ctx has no earlier deadline: the
	// wait for a connection (while the broker is unreachable) and for the
	// broker's confirm; default [DefaultPublishTimeout], from 1ms to 10
	// minutes.
	PublishTimeout time.Duration
	// MaxMessageSize bounds a published message (payload and headers); larger
	// ones get an error wrapping [transport.ErrTooLarge] before anything is
	// sent. Default [DefaultMaxMessageSize] (the broker's default
	// max_message_size); at most 512 MiB (the broker's maximum). Set it to the
	// broker's max_message_size if that is lower.
	MaxMessageSize int
	// PublisherChannels is how many confirm-mode channels the publishes are
	// spread over (each pipelines its publishes and awaits their confirms);
	// default [DefaultPublisherChannels], at most 64.
	PublisherChannels int

	// PoisonMaxAge bounds how long the poison stream keeps records
	// (x-max-age, whole segments at a time); default 0, until they are
	// purged or replayed. Otherwise from 1 second to 10 years.
	PoisonMaxAge time.Duration

	// Logger receives the transport's logs: connection changes, declarations,
	// redelivery fallbacks; never a line per event. Default: no logs.
	Logger *zap.Logger
}

// Option changes a Config in [New], after its fields are read.
type Option interface{ apply(*Config) error }

type optionFunc func(*Config) error

func (f optionFunc) apply(c *Config) error { return f(c) }

// WithLogger sets Config.Logger; a nil logger is an error wrapping
// [transport.ErrInvalidOption].
func WithLogger(l *zap.Logger) Option {
	return optionFunc(func(c *Config) error {
		if l == nil {
			return invalid("nil logger")
		}
		c.Logger = l
		return nil
	})
}

func invalid(format string, args ...any) error {
	return adapterkit.Invalid("rabbitmq", format, args...)
}

// withDefaults validates c and fills its zero fields.
func (c Config) withDefaults() (Config, error) {
	if c.URL == "" {
		c.URL = DefaultURL
	}
	if _, err := amqp.ParseURI(c.URL); err != nil {
		return c, invalid("URL: %v", err)
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if len(c.Prefix) > 100 {
		return c, invalid("Prefix is %d bytes, more than 100", len(c.Prefix))
	}
	if err := validRoutingKey(c.Prefix); err != nil {
		return c, invalid("Prefix: %v", err)
	}
	const day = 24 * time.Hour
	d := adapterkit.Field[time.Duration]
	if err := adapterkit.Fill("rabbitmq",
		d("ConnectTimeout", &c.ConnectTimeout, DefaultConnectTimeout, time.Millisecond, time.Minute),
		d("RequestTimeout", &c.RequestTimeout, DefaultRequestTimeout, time.Millisecond, 10*time.Minute),
		d("ReconnectWait", &c.ReconnectWait, DefaultReconnectWait, time.Millisecond, time.Minute),
		d("MaxReconnectWait", &c.MaxReconnectWait, DefaultMaxReconnectWait, time.Millisecond, 10*time.Minute),
		d("NakDelay", &c.NakDelay, DefaultNakDelay, time.Millisecond, day),
		d("MaxNakDelay", &c.MaxNakDelay, DefaultMaxNakDelay, time.Millisecond, day),
		d("PublishTimeout", &c.PublishTimeout, DefaultPublishTimeout, time.Millisecond, 10*time.Minute),
		d("PoisonMaxAge", &c.PoisonMaxAge, 0, time.Second, 10*365*day),
	); err != nil {
		return c, err
	}
	c.MaxNakDelay = max(c.MaxNakDelay, c.NakDelay)
	c.MaxReconnectWait = max(c.MaxReconnectWait, c.ReconnectWait)
	n := adapterkit.Field[int]
	if err := adapterkit.Fill("rabbitmq",
		n("Prefetch", &c.Prefetch, DefaultPrefetch, 0, 65535),
		n("MaxMessageSize", &c.MaxMessageSize, DefaultMaxMessageSize, 0, 512<<20),
		n("PublisherChannels", &c.PublisherChannels, DefaultPublisherChannels, 0, 64),
	); err != nil {
		return c, err
	}
	if c.AMQP.Dial == nil {
		c.AMQP.Dial = amqp.DefaultDial(c.ConnectTimeout)
	}
	if c.AMQP.Properties == nil {
		c.AMQP.Properties = amqp.Table{"connection_name": "herald"}
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c, nil
}
