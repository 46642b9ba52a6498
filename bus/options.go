package bus

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/middleware"
	"github.com/heraldbus/herald/transport"
)

// Defaults of a bus built with no options.
const (
	// DefaultMaxEventSize is the largest encoded event Publish accepts: 1 MiB,
	// the default max_payload of a NATS server.
	DefaultMaxEventSize = 1 << 20
	// DefaultShutdownTimeout bounds the Close that Run does when its ctx ends.
	DefaultShutdownTimeout = 30 * time.Second
	// MaxEventSize is the largest size [WithMaxEventSize] accepts: 64 MiB, the
	// largest max_payload a NATS server allows.
	MaxEventSize = 64 << 20
	// MaxConcurrency is the largest [WithConcurrency] accepts.
	MaxConcurrency = 1 << 16
)

// Option configures a [Bus]. Options are applied in order by [New], which
// returns the first error, wrapping [ErrInvalidOption].
type Option interface{ applyBus(*config) error }

type busOption func(*config) error

func (f busOption) applyBus(c *config) error { return f(c) }

type config struct {
	transport       transport.Transport
	logger          *zap.Logger
	codec           handlers.Codec
	middleware      []message.HandlerMiddleware
	retry           middleware.RetryPolicy
	maxEventSize    int
	poison          transport.PoisonStore
	shutdownTimeout time.Duration
	encodeAlways    bool
	asyncWindow     int
	asyncOnError    func(id string, err error)
	observe         observeConfig // WithTracing, WithPropagator, WithMetrics (observe.go)
	trackTTL        time.Duration // WithTracking (track.go); 0: off
	tracker         *tracker      // set by New when trackTTL > 0
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
}

// invalidErr wraps err, the reason an option is invalid, keeping its chain.
func invalidErr(err error) error { return fmt.Errorf("%w: %w", ErrInvalidOption, err) }

// WithTransport sets the transport; the default is a new memory transport. The
// bus owns it: Close closes it.
func WithTransport(t transport.Transport) Option {
	return busOption(func(c *config) error { return setNonNil(&c.transport, "transport", t) })
}

// WithLogger sets the logger; the default logs nothing.
func WithLogger(l *zap.Logger) Option {
	return busOption(func(c *config) error { return setNonNil(&c.logger, "logger", l) })
}

// WithCodec sets the event codec; the default is JSON.
func WithCodec(codec handlers.Codec) Option {
	return busOption(func(c *config) error { return setNonNil(&c.codec, "codec", codec) })
}

// WithMiddleware adds middleware around every handler, outside the handler's
// own middleware and the default chain. The first given is the outermost.
func WithMiddleware(mw ...message.HandlerMiddleware) Option {
	return busOption(func(c *config) error { return addMiddleware(&c.middleware, mw) })
}

// WithDefaultRetry sets the retry policy of every handler that does not set
// its own with [WithRetry]; the default is [middleware.DefaultRetryPolicy].
func WithDefaultRetry(p middleware.RetryPolicy) Option {
	return busOption(func(c *config) error { return setValid(&c.retry, p) })
}

// WithMaxEventSize sets the largest encoded event Publish accepts, 1 byte to
// [MaxEventSize]; larger events get [ErrEventTooLarge]. The default is
// [DefaultMaxEventSize]. Keep it at or below the NATS server's max_payload.
func WithMaxEventSize(n int) Option {
	return busOption(func(c *config) error { return setInRange(&c.maxEventSize, "max event size", n, 1, MaxEventSize) })
}

// WithPoisonStore sets where poison records go. The default is the transport
// itself when it implements [transport.PoisonStore] (memory and NATS do), and
// otherwise a store in process memory.
func WithPoisonStore(s transport.PoisonStore) Option {
	return busOption(func(c *config) error { return setNonNil(&c.poison, "poison store", s) })
}

// WithShutdownTimeout bounds the Close that [Bus.Run] does once its ctx ends.
// The default is [DefaultShutdownTimeout].
func WithShutdownTimeout(d time.Duration) Option {
	return busOption(func(c *config) error { return setPositive(&c.shutdownTimeout, "shutdown timeout", d) })
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
	retry       *middleware.RetryPolicy
	decode      bool
	keyOrdered  bool
	timeout     time.Duration
	rate        rate.Limit
	burst       int
	breaker     *middleware.BreakerConfig
	dedup       middleware.DedupStore
	dedupTTL    time.Duration
	slow        time.Duration
	from        *time.Time // WithStartFrom
	request     bool       // a request handler (Handle)
}

// WithConcurrency sets how many events the handler processes at once (n
// workers, 1 to [MaxConcurrency]); the default is 1, which keeps publish order
// (except for an event retried through the transport: see
// [middleware.RetryPolicy]).
func WithConcurrency(n int) SubscribeOption {
	return subOption(func(c *subConfig) error { return setInRange(&c.concurrency, "concurrency", n, 1, MaxConcurrency) })
}

// WithHandlerMiddleware adds middleware around this handler, inside the
// bus-wide middleware and outside the default chain. The first is outermost.
func WithHandlerMiddleware(mw ...message.HandlerMiddleware) SubscribeOption {
	return subOption(func(c *subConfig) error { return addMiddleware(&c.middleware, mw) })
}

// WithRetry sets this handler's retry policy, instead of the bus's default
// ([WithDefaultRetry]). MaxAttempts 1 disables retries: a failure goes to the
// poison queue at once.
func WithRetry(p middleware.RetryPolicy) SubscribeOption {
	return subOption(func(c *subConfig) error { return setValid(&c.retry, &p) })
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
// Events without a key are spread by ID. Every retry of such a handler runs in
// process ([middleware.RetryPolicy.InProcess]), so that a failing event keeps
// its place; an event nacked for redelivery for another reason (an open
// circuit breaker, a failed poison store) goes to the back of the queue,
// except on NATS. Keys run in parallel on transports whose subscribers
// implement [transport.WindowSubscriber] (all four); over another one, order
// holds but events are handled one at a time.
//
// How far the order reaches depends on the transport (docs/contract.md 6.4):
// on memory and RabbitMQ, within one process: replicas of the handler split
// its events without regard to keys. On NATS, across every replica: keyed
// events go to partitions (nats.Config.Partitions) that the handler's
// processes consume together with one event in flight
// ([transport.KeyedSubscriber]). On Kafka, across replicas by the topic's
// partitions.
func WithOrderingByKey() SubscribeOption {
	return subOption(func(c *subConfig) error {
		c.keyOrdered = true
		return nil
	})
}

// WithAttemptTimeout cancels the handler's ctx d after each attempt starts; an
// attempt that fails after its deadline is a retryable failure wrapping
// [middleware.ErrTimeout]. See [middleware.Timeout].
func WithAttemptTimeout(d time.Duration) SubscribeOption {
	return subOption(func(c *subConfig) error { return setPositive(&c.timeout, "attempt timeout", d) })
}

// WithRateLimit lets the handler run at most perSecond attempts per second
// (retries included) with bursts of burst, across its workers. See
// [middleware.RateLimit].
func WithRateLimit(perSecond float64, burst int) SubscribeOption {
	return subOption(func(c *subConfig) error {
		if !(perSecond > 0) || math.IsInf(perSecond, 1) || burst < 1 || burst > math.MaxInt32 {
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
	return subOption(func(c *subConfig) error { return setValid(&c.breaker, &cfg) })
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
	return subOption(func(c *subConfig) error { return setPositive(&c.slow, "slow threshold", d) })
}

// PublishOption configures one Publish. Publish returns the first error,
// wrapping [ErrInvalidOption]; options are validated the same way on every
// transport, so what memory accepts NATS carries.
type PublishOption interface{ applyPub(*pubConfig) error }

type pubOption func(*pubConfig) error

func (f pubOption) applyPub(c *pubConfig) error { return f(c) }

type pubConfig struct {
	id, correlationID, orderingKey string
	ids                            []string // PublishBatch: events[i] gets ids[i]
	metadata                       message.Metadata
}

// maxValue bounds IDs, keys and metadata values (a NATS header line is far
// larger, but nothing legitimate comes near this).
const maxValue = 4096

// validValue checks a value that travels as a header value: no CR, LF or
// other control characters, valid UTF-8, at most maxValue bytes.
func validValue(what, v string) error {
	if len(v) > maxValue {
		return invalid("%s is %d bytes, the limit is %d", what, len(v), maxValue)
	}
	if !utf8.ValidString(v) {
		return invalid("%s is not valid UTF-8", what)
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return invalid("%s %s contains a control character", what, strconv.QuoteToASCII(v))
		}
	}
	return nil
}

// WithMessageID sets the event ID instead of a generated one: non-empty, no
// control characters, at most 4096 bytes. Publishing the same ID again within
// the transport's dedup window (NATS) stores it once; see the NATS adapter's
// Retention for the one case where it does not (a server restart with the
// non-default interest retention forgets acknowledged IDs). The memory transport has no dedup
// window: use [WithDedup] on the handlers for that.
func WithMessageID(id string) PublishOption {
	return pubOption(func(c *pubConfig) error { return setValue(&c.id, "message ID", id, true) })
}

// WithMessageIDs sets the IDs of a [PublishBatch]'s events: events[i] gets
// ids[i]. It takes exactly one ID per event; each follows the rules of
// [WithMessageID], and no ID may appear twice. Anywhere else, with the wrong
// number of IDs, or with an invalid or repeated ID, the publish fails with
// [ErrInvalidOption] before any event is sent. The slice is copied.
func WithMessageIDs(ids ...string) PublishOption {
	return pubOption(func(c *pubConfig) error {
		seen := make(map[string]struct{}, len(ids))
		for i, id := range ids {
			if err := validValue("message ID "+strconv.Itoa(i), id); err != nil {
				return err
			}
			if id == "" {
				return invalid("message ID %d is empty", i)
			}
			if _, dup := seen[id]; dup {
				return invalid("message ID %q appears twice", id)
			}
			seen[id] = struct{}{}
		}
		c.ids = slices.Clone(ids)
		if c.ids == nil {
			c.ids = []string{}
		}
		return nil
	})
}

// WithCorrelationID sets the correlation ID of a root event (one not published
// from a handler's ctx, whose correlation ID wins). Same rules as
// [WithMessageID].
func WithCorrelationID(id string) PublishOption {
	return pubOption(func(c *pubConfig) error { return setValue(&c.correlationID, "correlation ID", id, true) })
}

// WithOrderingKey sets the event's ordering key (see [WithOrderingByKey]).
// Same rules as [WithMessageID]; "" means no key.
func WithOrderingKey(key string) PublishOption {
	return pubOption(func(c *pubConfig) error { return setValue(&c.orderingKey, "ordering key", key, false) })
}

// The setters of the option constructors: each checks the option's value
// and stores it, or returns an error wrapping ErrInvalidOption that names the
// option (what) and leaves *dst as it was.

// setPositive stores d if it is positive.
func setPositive(dst *time.Duration, what string, d time.Duration) error {
	if d <= 0 {
		return invalid("%s %v <= 0", what, d)
	}
	*dst = d
	return nil
}

// setInRange stores n if it is within [lo, hi].
func setInRange(dst *int, what string, n, lo, hi int) error {
	if n < lo || n > hi {
		return invalid("%s %d not in [%d, %d]", what, n, lo, hi)
	}
	*dst = n
	return nil
}

// setNonNil stores v if it is not nil (a nil pointer, or an interface
// holding nothing).
func setNonNil[T comparable](dst *T, what string, v T) error {
	var zero T
	if v == zero {
		return invalid("nil %s", what)
	}
	*dst = v
	return nil
}

// setValid stores v if its Validate accepts it, wrapping Validate's error.
func setValid[T interface{ Validate() error }](dst *T, v T) error {
	if err := v.Validate(); err != nil {
		return invalidErr(err)
	}
	*dst = v
	return nil
}

// addMiddleware appends mw to *dst if none of it is nil.
func addMiddleware(dst *[]message.HandlerMiddleware, mw []message.HandlerMiddleware) error {
	for i, m := range mw {
		if m == nil {
			return invalid("nil middleware at %d", i)
		}
	}
	*dst = append(*dst, mw...)
	return nil
}

// setValue validates v (see validValue; required: not empty) and stores it.
func setValue(dst *string, what, v string, required bool) error {
	if required && v == "" {
		return invalid("empty %s", what)
	}
	if err := validValue(what, v); err != nil {
		return err
	}
	*dst = v
	return nil
}

// WithMetadata adds an entry to the event's message metadata (a NATS header).
// The key must be a header field name (letters, digits and !#$%&'*+-.^_`|~,
// no ':' or space) and must not start with "Herald-" or "Nats-" (reserved, in
// any case); the value follows the rules of [WithMessageID] and may be empty.
func WithMetadata(key, value string) PublishOption {
	return pubOption(func(c *pubConfig) error {
		if key == "" || len(key) > 256 {
			return invalid("metadata key %q: empty or longer than 256 bytes", key)
		}
		for i := 0; i < len(key); i++ {
			if !headerToken(key[i]) {
				return invalid("metadata key %s: not a header field name", strconv.QuoteToASCII(key))
			}
		}
		low := strings.ToLower(key)
		if strings.HasPrefix(low, "herald-") || strings.HasPrefix(low, "nats-") || low == "content-type" {
			return invalid("metadata key %q is reserved", key)
		}
		if err := validValue("metadata value of "+key, value); err != nil {
			return err
		}
		if c.metadata == nil {
			c.metadata = message.Metadata{}
		}
		c.metadata[key] = value
		return nil
	})
}

// headerToken reports whether c may appear in a header field name (RFC 9110 token).
func headerToken(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
