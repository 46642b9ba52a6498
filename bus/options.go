package bus

import (
	"fmt"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/middleware"
)

// Defaults of a bus built with no options.
const (
	// DefaultMaxEventSize is the largest encoded event Publish accepts: 1 MiB,
	// the default max_payload of a NATS server.
	DefaultMaxEventSize = 1 << 20
	// DefaultShutdownTimeout bounds the Close that Run does when its ctx ends.
	DefaultShutdownTimeout = 30 * time.Second
)

// RetryPolicy says how often and how long a failing handler is retried; the
// zero value is the default (5 attempts, 100ms doubling to 10s, ±50% jitter).
type RetryPolicy = middleware.RetryPolicy

// PoisonStore keeps poison records; see [middleware.PoisonStore].
type PoisonStore = middleware.PoisonStore

// Option configures a [Bus]. Options are applied in order by [New], which
// returns the first error, wrapping [ErrInvalidOption].
type Option interface{ applyBus(*config) error }

type busOption func(*config) error

func (f busOption) applyBus(c *config) error { return f(c) }

type config struct {
	transport       Transport
	logger          *zap.Logger
	codec           handlers.Codec
	middleware      []message.HandlerMiddleware
	retry           RetryPolicy
	maxEventSize    int
	poison          PoisonStore
	shutdownTimeout time.Duration
	encodeAlways    bool
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
}

// WithTransport sets the transport; the default is a new memory transport. The
// bus owns it: Close closes it.
func WithTransport(t Transport) Option {
	return busOption(func(c *config) error {
		if t == nil {
			return invalid("nil transport")
		}
		c.transport = t
		return nil
	})
}

// WithLogger sets the logger; the default logs nothing.
func WithLogger(l *zap.Logger) Option {
	return busOption(func(c *config) error {
		if l == nil {
			return invalid("nil logger")
		}
		c.logger = l
		return nil
	})
}

// WithCodec sets the event codec; the default is JSON.
func WithCodec(codec handlers.Codec) Option {
	return busOption(func(c *config) error {
		if codec == nil {
			return invalid("nil codec")
		}
		c.codec = codec
		return nil
	})
}

// WithMiddleware adds middleware around every handler, outside the handler's
// own middleware and the default chain. The first given is the outermost.
func WithMiddleware(mw ...message.HandlerMiddleware) Option {
	return busOption(func(c *config) error {
		for i, m := range mw {
			if m == nil {
				return invalid("nil middleware at %d", i)
			}
		}
		c.middleware = append(c.middleware, mw...)
		return nil
	})
}

// WithRetry sets the retry policy of every handler that does not set its own.
func WithRetry(p RetryPolicy) Option {
	return busOption(func(c *config) error {
		if err := p.Validate(); err != nil {
			return invalid("%v", err)
		}
		c.retry = p
		return nil
	})
}

// WithMaxEventSize sets the largest encoded event Publish accepts; larger
// events get [ErrEventTooLarge]. The default is [DefaultMaxEventSize]. Keep it
// at or below the NATS server's max_payload.
func WithMaxEventSize(n int) Option {
	return busOption(func(c *config) error {
		if n <= 0 {
			return invalid("max event size %d <= 0", n)
		}
		c.maxEventSize = n
		return nil
	})
}

// WithPoisonStore sets where poison records go. The default is the transport
// itself when it implements [PoisonStore] (memory and NATS do).
func WithPoisonStore(s PoisonStore) Option {
	return busOption(func(c *config) error {
		if s == nil {
			return invalid("nil poison store")
		}
		c.poison = s
		return nil
	})
}

// WithShutdownTimeout bounds the Close that [Bus.Run] does once its ctx ends.
// The default is [DefaultShutdownTimeout].
func WithShutdownTimeout(d time.Duration) Option {
	return busOption(func(c *config) error {
		if d <= 0 {
			return invalid("shutdown timeout %v <= 0", d)
		}
		c.shutdownTimeout = d
		return nil
	})
}

// WithEncodeAlways makes the in-process transport behave exactly as a remote
// one: every event is encoded at publish and decoded by every handler. Use it in
// tests that want NATS parity; it costs a json.Marshal per event and an
// Unmarshal per handler.
func WithEncodeAlways() Option {
	return busOption(func(c *config) error {
		c.encodeAlways = true
		return nil
	})
}

// SubscribeOption configures one handler. [Subscribe] returns the first error,
// wrapping [ErrInvalidOption].
type SubscribeOption interface{ applySub(*subConfig) error }

type subOption func(*subConfig) error

func (f subOption) applySub(c *subConfig) error { return f(c) }

type subConfig struct {
	concurrency int
	middleware  []message.HandlerMiddleware
	retry       *RetryPolicy
	decode      bool
	keyOrdered  bool
	timeout     time.Duration
	rate        rate.Limit
	burst       int
	breaker     *middleware.BreakerConfig
	dedup       middleware.DedupStore
	dedupTTL    time.Duration
	slow        time.Duration
}

// WithConcurrency sets how many events the handler processes at once (n
// workers); the default is 1, which keeps publish order.
func WithConcurrency(n int) SubscribeOption {
	return subOption(func(c *subConfig) error {
		if n < 1 {
			return invalid("concurrency %d < 1", n)
		}
		c.concurrency = n
		return nil
	})
}

// WithHandlerMiddleware adds middleware around this handler, inside the
// bus-wide middleware and outside the default chain. The first is outermost.
func WithHandlerMiddleware(mw ...message.HandlerMiddleware) SubscribeOption {
	return subOption(func(c *subConfig) error {
		for i, m := range mw {
			if m == nil {
				return invalid("nil middleware at %d", i)
			}
		}
		c.middleware = append(c.middleware, mw...)
		return nil
	})
}

// WithRetryPolicy sets this handler's retry policy. MaxAttempts 1 disables
// retries: a failure goes to the poison queue at once.
func WithRetryPolicy(p RetryPolicy) SubscribeOption {
	return subOption(func(c *subConfig) error {
		if err := p.Validate(); err != nil {
			return invalid("%v", err)
		}
		c.retry = &p
		return nil
	})
}

// WithDecode makes this handler decode every event from its encoded form, even
// in process, as it would over NATS.
func WithDecode() SubscribeOption {
	return subOption(func(c *subConfig) error {
		c.decode = true
		return nil
	})
}

// WithOrderingByKey keeps the events of one ordering key ([WithOrderingKey]) in
// publish order while events of different keys run in parallel on the
// handler's workers ([WithConcurrency]): a key always goes to the same worker.
// Events without a key are spread by ID. Order holds retries aside: an event
// nacked for redelivery (an open circuit breaker, a failed poison store) goes
// to the back of the queue. Keys run in parallel on the memory and NATS
// transports; over another watermill subscriber that waits for each ack before
// the next message (and ignores handlers.WithInFlight), order holds but events
// are handled one at a time.
func WithOrderingByKey() SubscribeOption {
	return subOption(func(c *subConfig) error {
		c.keyOrdered = true
		return nil
	})
}

// WithTimeout cancels the handler's ctx d after each attempt starts; an attempt
// that fails after its deadline is a retryable failure wrapping
// [middleware.ErrTimeout]. See [middleware.Timeout].
func WithTimeout(d time.Duration) SubscribeOption {
	return subOption(func(c *subConfig) error {
		if d <= 0 {
			return invalid("timeout %v <= 0", d)
		}
		c.timeout = d
		return nil
	})
}

// WithRateLimit lets the handler run at most perSecond attempts per second
// (retries included) with bursts of burst, across its workers. See
// [middleware.RateLimit].
func WithRateLimit(perSecond float64, burst int) SubscribeOption {
	return subOption(func(c *subConfig) error {
		if perSecond <= 0 || burst < 1 {
			return invalid("rate %v/s with burst %d", perSecond, burst)
		}
		c.rate, c.burst = rate.Limit(perSecond), burst
		return nil
	})
}

// WithCircuitBreaker stops calling the handler after cfg.ConsecutiveFailures
// failures in a row; while open, events are redelivered later, not poisoned.
// cfg.Name defaults to the handler's name. See [middleware.CircuitBreaker].
func WithCircuitBreaker(cfg middleware.BreakerConfig) SubscribeOption {
	return subOption(func(c *subConfig) error {
		c.breaker = &cfg
		return nil
	})
}

// WithDedup skips events this handler already completed within ttl, as
// recorded in store ([middleware.NewMemoryDedup] for one process; a shared
// store such as redisdedup for replicas). A crash between the handler's success
// and the mark yields a duplicate, never a loss. See [middleware.Dedup].
func WithDedup(store middleware.DedupStore, ttl time.Duration) SubscribeOption {
	return subOption(func(c *subConfig) error {
		if store == nil || ttl <= 0 {
			return invalid("dedup needs a store and a positive ttl")
		}
		c.dedup, c.dedupTTL = store, ttl
		return nil
	})
}

// WithSlowThreshold sets the duration above which an attempt is logged as
// slow; default [middleware.DefaultSlowThreshold].
func WithSlowThreshold(d time.Duration) SubscribeOption {
	return subOption(func(c *subConfig) error {
		if d <= 0 {
			return invalid("slow threshold %v <= 0", d)
		}
		c.slow = d
		return nil
	})
}

// PublishOption configures one Publish.
type PublishOption interface{ applyPub(*pubConfig) }

type pubOption func(*pubConfig)

func (f pubOption) applyPub(c *pubConfig) { f(c) }

type pubConfig struct {
	id, correlationID, orderingKey string
	metadata                       message.Metadata
}

// WithMessageID sets the event ID instead of a generated one. Publishing the
// same ID again within the transport's dedup window (NATS) stores it once;
// see the NATS adapter's Retention for the one case where it does not (a
// server restart with interest retention forgets acknowledged IDs). The memory
// transport has no dedup window: use [WithDedup] on the handlers for that.
func WithMessageID(id string) PublishOption {
	return pubOption(func(c *pubConfig) { c.id = id })
}

// WithCorrelationID sets the correlation ID of a root event (one not published
// from a handler's ctx, whose correlation ID wins).
func WithCorrelationID(id string) PublishOption {
	return pubOption(func(c *pubConfig) { c.correlationID = id })
}

// WithOrderingKey sets the event's ordering key (KeyOrderingKey metadata).
func WithOrderingKey(key string) PublishOption {
	return pubOption(func(c *pubConfig) { c.orderingKey = key })
}

// WithMetadata adds an entry to the event's message metadata (a NATS header).
// Keys starting with "Herald-" are reserved and ignored.
func WithMetadata(key, value string) PublishOption {
	return pubOption(func(c *pubConfig) {
		if strings.HasPrefix(key, "Herald-") {
			return
		}
		if c.metadata == nil {
			c.metadata = message.Metadata{}
		}
		c.metadata[key] = value
	})
}
