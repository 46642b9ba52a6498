package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldbus/herald/internal/adapterkit"
	"github.com/heraldbus/herald/transport"
)

// Transport is a Herald transport over RabbitMQ: give it to the bus with
// bus.WithTransport, which then owns it (its Close closes the transport).
// The package doc describes the layout on the broker and the delivery rules.
// All methods are safe for concurrent use.
type Transport struct {
	cfg  Config
	link *link
	pub  *publisher

	ready adapterkit.Prepared

	waitMu       sync.Mutex
	waitDeclared map[string]bool // wait queues declared by this transport

	poison *poisonIndex

	closeOnce sync.Once
	closed    chan struct{}
	mu        sync.Mutex
	subs      map[*subscriber]struct{}
}

var (
	_ transport.Transport      = (*Transport)(nil)
	_ transport.Starter        = (*Transport)(nil)
	_ transport.BatchPublisher = (*Transport)(nil)
	_ transport.PoisonStore    = (*Transport)(nil)
)

// New returns a transport configured by cfg and then opts. It connects to
// cfg.URL first and fails if the broker does not answer within
// cfg.ConnectTimeout; from then on it reconnects by itself whenever the
// connection is lost, until Close. The exchange is declared by
// [Transport.Start] (the bus calls it at bus Start) or on first use. Invalid
// settings give an error wrapping [transport.ErrInvalidOption].
func New(cfg Config, opts ...Option) (*Transport, error) {
	for _, o := range opts {
		if o == nil {
			return nil, invalid("nil option")
		}
		if err := o.apply(&cfg); err != nil {
			return nil, err
		}
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	conn, err := dial(cfg)
	if err != nil {
		return nil, err
	}
	t := &Transport{cfg: cfg, closed: make(chan struct{}), subs: map[*subscriber]struct{}{}, waitDeclared: map[string]bool{}}
	t.link = newLink(cfg, conn, t.closed)
	t.pub = newPublisher(t)
	t.poison = newPoisonIndex(t)
	return t, nil
}

// Config returns the transport's configuration, with defaults filled in.
func (t *Transport) Config() Config { return t.cfg }

func (t *Transport) isClosed() bool { return adapterkit.IsClosed(t.closed) }

// Start declares the events exchange (a durable topic exchange) and the
// poison stream, waiting for the connection if it is being re-established. It
// honours ctx and does its work once: later calls return nil at once.
func (t *Transport) Start(ctx context.Context) error { return t.prepare(ctx) }

func (t *Transport) prepare(ctx context.Context) error {
	return t.ready.Do(t.closed, func() error { return t.withChannel(ctx, t.declare) })
}

// declare declares the events exchange and the poison stream.
func (t *Transport) declare(ch *amqp.Channel) error {
	if err := ch.ExchangeDeclare(t.exchange(), amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %q: %w", t.exchange(), err)
	}
	args := amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeStream}
	if t.cfg.PoisonMaxAge > 0 {
		args[amqp.StreamMaxAgeArg] = fmt.Sprintf("%ds", int64(t.cfg.PoisonMaxAge.Seconds()))
	}
	if _, err := ch.QueueDeclare(t.poisonName(), true, false, false, false, args); err != nil {
		return fmt.Errorf("declare poison stream %q: %w", t.poisonName(), err)
	}
	return nil
}

// withChannel runs fn on a new channel, closed afterwards, bounded by ctx or,
// when ctx has no deadline, by RequestTimeout. fn's error is prefixed with the
// package's name.
func (t *Transport) withChannel(ctx context.Context, fn func(ch *amqp.Channel) error) error {
	ctx, cancel := t.requestCtx(ctx)
	defer cancel()
	ch, err := t.link.channel(ctx)
	if err != nil {
		return fmt.Errorf("herald/rabbitmq: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- fn(ch) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = ch.Close() // fn's call returns with an error
		<-done
		return fmt.Errorf("herald/rabbitmq: %w", ctx.Err())
	}
	_ = ch.Close()
	if err != nil {
		return fmt.Errorf("herald/rabbitmq: %w", err)
	}
	return nil
}

// requestCtx bounds a ctx without deadline by RequestTimeout.
func (t *Transport) requestCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, t.cfg.RequestTimeout)
}

// isNotFound reports whether err is the broker's 404 (a passive declare of a
// queue that does not exist).
func isNotFound(err error) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == amqp.NotFound
}

// Publisher returns the transport's publisher. Its Publish(topic, msgs...)
// publishes each message to the events exchange with the routing key topic,
// persistent, and returns nil only once the broker has confirmed every one
// (publisher confirms: the message is in every queue bound to the key):
//
//   - Publishes are spread over Config.PublisherChannels confirm channels and
//     pipelined: each waits for its own confirm. Each message's Context bounds
//     its wait (and, without a deadline, PublishTimeout does). While the
//     connection is lost, Publish waits for it within that bound, then fails:
//     it never drops a message silently.
//   - A confirm that does not come (the broker nacked it, or the connection
//     was lost before it came) is an error; the message may have been stored
//     all the same: publish it again, and handlers may see it twice.
//   - msg.UUID becomes the AMQP message-id, every metadata entry a header
//     (Herald-Id, Herald-Event, ...); keys starting with a lower-case "x-" and
//     Herald-Delivery-Count are the broker's and transport's, and skipped.
//   - A message larger than MaxMessageSize gives an error wrapping
//     [transport.ErrTooLarge]; on a closed transport, [transport.ErrClosed].
//   - A replay topic (transport.ReplayTopic(h)) needs the replay queue of h,
//     which exists once h has subscribed (and stays while it is down):
//     otherwise the error wraps [transport.ErrNoHandler].
//
// The publisher's Close does nothing: the transport owns the connection.
func (t *Transport) Publisher() message.Publisher { return t.pub }

// Close stops every subscriber (their unacknowledged deliveries go back to
// their queues), fails the publishes still waiting for a confirm with
// [transport.ErrClosed], and closes the connection. Later calls return an
// error wrapping [transport.ErrClosed].
func (t *Transport) Close() error {
	first := false
	t.closeOnce.Do(func() {
		first = true
		close(t.closed)
		adapterkit.CloseAll(&t.mu, t.subs)
		t.poison.close()
		t.pub.close()
		t.link.shutdown()
	})
	if !first {
		return fmt.Errorf("herald/rabbitmq: close: %w", transport.ErrClosed)
	}
	t.cfg.Logger.Debug("rabbitmq transport closed")
	return nil
}
