package nats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/internal/adapterkit"
)

// Transport is a Herald transport over NATS JetStream: give it to the bus with
// bus.WithTransport, which then owns it (its Close closes the transport).
//
// Events go to one stream (Config.StreamName) on subjects
// "<SubjectPrefix>.<event name>". Each handler name consumes each of its
// topics through a durable pull consumer: every name gets every event, the
// processes (and workers) of one name share its events, and events published
// while no process of a name runs wait for it. Poison records go to a second
// stream (see [Transport.PutPoison]).
//
// Why nats.go and not watermill-nats: watermill-nats v2.1.3 publishes one
// message at a time and waits for its PubAck (about 17 times slower than the
// pipelined publishes used here, each awaiting its PubAck on a reply subject
// of the transport's), its JetStream consumers are ephemeral
// unless a custom initializer is given, it never creates streams, it acks
// synchronously by default, its Subscriber.Close drains the connection even
// when the caller owns it, and it recreates consumers on reconnect
// (watermill-nats#671: acknowledged messages come back). The transport still
// speaks watermill's message.Publisher and message.Subscriber, so the bus
// treats it as any other watermill transport.
//
// All methods are safe for concurrent use.
type Transport struct {
	cfg   Config
	nc    *nats.Conn
	owned bool // the transport dialled nc and closes it
	js    jetstream.JetStream

	pubSlots chan struct{} // a token per publish waiting for its PubAck
	acks     *acker

	// The streams, prepared by prepare, and again when found missing.
	ready     adapterkit.Prepared
	gen       atomic.Uint64 // how many times the streams were prepared
	strm      atomic.Pointer[streams]
	lastErr   error // of the last prepare that failed, and when (in prepare)
	lastErrAt time.Time

	status      chan nats.Status
	statusDone  chan struct{}
	reconnected atomic.Pointer[chan struct{}] // closed and replaced at each reconnect

	closeOnce sync.Once
	closed    chan struct{}
	closeErr  error
	mu        sync.Mutex
	subs      map[*subscriber]struct{}
	positions map[string]*position // by consumer name
	track     *tracker             // delivery tracking, once DeliveryStore was called (track.go)
}

// New returns a transport configured by cfg. Unless cfg.Conn is
// set it connects to cfg.URL first, and fails if no server answers within
// cfg.ConnectTimeout. Streams are created or checked by [Transport.Start] (the
// bus calls it at bus Start), or on first use. Invalid settings give an error
// wrapping [transport.ErrInvalidOption].
func New(cfg Config) (*Transport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	t := &Transport{cfg: cfg, nc: cfg.Conn, closed: make(chan struct{}), subs: map[*subscriber]struct{}{},
		positions: map[string]*position{}}
	if t.nc == nil {
		nopts := append([]nats.Option{
			nats.Name("herald"),
			nats.Timeout(cfg.ConnectTimeout),
			nats.MaxReconnects(-1),
		}, cfg.NATSOptions...)
		t.nc, err = nats.Connect(cfg.URL, nopts...)
		if err != nil {
			return nil, fmt.Errorf("herald/nats: connect to %s: %w", redact(cfg.URL), err)
		}
		t.owned = true
	} else if t.nc.IsClosed() {
		return nil, invalid("Conn is closed")
	}
	t.pubSlots = make(chan struct{}, cfg.MaxPendingPublishes)
	t.acks = newAcker(t.nc, cfg.PubAckTimeout, func() {
		select {
		case <-t.pubSlots:
		default:
		}
	})
	// Events are published with t.acks, not with the JetStream context's
	// async publisher (see pubacks.go): t.js serves the stream and consumer
	// API and poison records (synchronous publishes).
	t.js, err = jetstream.New(t.nc, jetstream.WithDefaultTimeout(cfg.RequestTimeout))
	if err != nil {
		t.closeConn()
		return nil, fmt.Errorf("herald/nats: %w", err)
	}
	ch := make(chan struct{})
	t.reconnected.Store(&ch)
	t.status = t.nc.StatusChanged(nats.CONNECTED, nats.DISCONNECTED, nats.RECONNECTING)
	t.statusDone = make(chan struct{})
	go t.watchStatus()
	return t, nil
}

// redact hides a password in a URL list.
func redact(url string) string {
	parts := strings.Split(url, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if s := strings.Index(p, "://"); s >= 0 && s < at {
				parts[i] = p[:s+3] + "***" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}

// watchStatus logs connection changes and tells the consumers when the
// connection is back, so that they pull again at once (the server forgot
// their pending pull requests) rather than after a missed heartbeat.
func (t *Transport) watchStatus() {
	defer close(t.statusDone)
	log := t.cfg.Logger
	for st := range t.status {
		switch st {
		case nats.CONNECTED:
			log.Info("nats reconnected", zap.String("server", t.nc.ConnectedUrlRedacted()))
			ch := make(chan struct{})
			old := t.reconnected.Swap(&ch)
			close(*old)
		case nats.DISCONNECTED, nats.RECONNECTING:
			log.Warn("nats connection lost; reconnecting", zap.Stringer("status", st), zap.Error(t.nc.LastError()))
			// Their PubAcks may never come: the publishers learn it now.
			t.acks.failAll(nats.ErrDisconnected)
		}
	}
}

func (t *Transport) reconnectedCh() <-chan struct{} { return *t.reconnected.Load() }

// position returns the position of the consumer name, shared by every
// subscriber and pump of it in this transport.
func (t *Transport) position(name string) *position {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.positions[name]
	if !ok {
		p = newPosition(t.cfg.MaxAckPending)
		t.positions[name] = p
	}
	return p
}

// forgetPosition drops what the transport knows of the consumer name's
// position: the consumer was deleted on purpose (DeleteHandler), so a later
// one of the same name starts as a new handler, not from the old position.
func (t *Transport) forgetPosition(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.positions, name)
}

// Conn returns the transport's connection (its own or Config.Conn).
func (t *Transport) Conn() *nats.Conn { return t.nc }

// JetStream returns the JetStream context the transport uses for streams,
// consumers and poison records. The transport does not publish events with
// its async publisher (PublishMsgAsync): a caller who does owns its cleanup.
func (t *Transport) JetStream() jetstream.JetStream { return t.js }

// Config returns the transport's configuration, with defaults filled in.
func (t *Transport) Config() Config { return t.cfg }

// Subject returns the NATS subject of topic.
func (t *Transport) Subject(topic string) string { return t.cfg.SubjectPrefix + "." + topic }

func (t *Transport) poisonPrefix() string     { return t.cfg.SubjectPrefix + "_poison" }
func (t *Transport) poisonStreamName() string { return t.cfg.StreamName + "_POISON" }

func (t *Transport) isClosed() bool { return adapterkit.IsClosed(t.closed) }

// Start checks the server (nats-server 2.9 or newer, JetStream enabled) and
// creates the events and poison streams, or checks that existing ones capture
// the transport's subjects; with delivery tracking on, it creates the tracking
// bucket too (or uses the one that exists). It honours ctx and does its work once: later calls
// return nil at once. The bus calls it at bus Start; errors wrap
// [ErrUnsupportedServer] when the server cannot work.
//
// The streams are prepared again whenever the transport finds one missing
// (a server with memory storage restarted, or a stream deleted): a publish
// with no stream to answer, a consumer or poison operation told the stream
// does not exist. The first to find it prepares them again, with the
// consumers of every running subscriber, while the others wait for it; then
// each retries its operation once.
func (t *Transport) Start(ctx context.Context) error {
	if err := t.prepare(ctx); err != nil {
		return err
	}
	t.mu.Lock()
	tr := t.track
	t.mu.Unlock()
	if tr != nil {
		if _, err := tr.bucket(ctx); err != nil {
			return err
		}
	}
	return nil
}

// streams are the transport's two streams.
type streams struct{ events, poison jetstream.Stream }

func (t *Transport) eventsStream() jetstream.Stream { return t.strm.Load().events }
func (t *Transport) poisonStream() jetstream.Stream { return t.strm.Load().poison }

// prepareBackoff is how long a failed prepare answers others with its error
// rather than asking the server again.
const prepareBackoff = 100 * time.Millisecond

func (t *Transport) prepare(ctx context.Context) error {
	return t.ready.Do(t.closed, func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if t.lastErr != nil && time.Since(t.lastErrAt) < prepareBackoff {
			return t.lastErr
		}
		err := t.prepareLocked(ctx)
		if err != nil && ctx.Err() == nil {
			t.lastErr, t.lastErrAt = err, time.Now()
		} else {
			t.lastErr = nil
		}
		return err
	})
}

func (t *Transport) prepareLocked(ctx context.Context) error {
	if !t.nc.IsConnected() {
		return fmt.Errorf("herald/nats: not connected to %s (status %v): %w", redact(t.cfg.URL), t.nc.Status(), t.nc.LastError())
	}
	if v := t.nc.ConnectedServerVersion(); v != "" && !atLeast(v, 2, 9) {
		return fmt.Errorf("%w: nats-server %s; Herald needs 2.9 or newer", ErrUnsupportedServer, v)
	}
	if _, err := t.js.AccountInfo(ctx); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return fmt.Errorf("%w: %v (start nats-server with -js)", ErrUnsupportedServer, err)
		}
		return fmt.Errorf("herald/nats: JetStream account info: %w", err)
	}
	retention := jetstream.InterestPolicy
	if t.cfg.Retention == RetentionLimits {
		retention = jetstream.LimitsPolicy
	}
	events, err := t.ensureStream(ctx, jetstream.StreamConfig{
		Name:        t.cfg.StreamName,
		Description: "Herald events",
		Subjects:    []string{t.cfg.SubjectPrefix + ".>"},
		Retention:   retention,
		Storage:     t.cfg.Storage,
		Replicas:    t.cfg.Replicas,
		MaxAge:      max(t.cfg.MaxAge, 0), // negative: no limit
		Duplicates:  t.cfg.DuplicateWindow,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		return err
	}
	poison, err := t.ensureStream(ctx, jetstream.StreamConfig{
		Name:        t.poisonStreamName(),
		Description: "Herald poison records",
		Subjects:    []string{t.poisonPrefix() + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     t.cfg.Storage,
		Replicas:    t.cfg.Replicas,
		MaxAge:      t.cfg.PoisonMaxAge,
		Duplicates:  t.cfg.DuplicateWindow,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		return err
	}
	t.strm.Store(&streams{events: events, poison: poison})
	if t.gen.Load() > 0 {
		if err := t.recreateConsumers(ctx); err != nil && t.cfg.Retention == RetentionInterest {
			// Not prepared: with interest retention the stream drops an
			// event that no consumer wants when it is stored, so a publish
			// let through now would be lost for the handlers whose consumer
			// is missing. Publishes wait for (and run) the next prepare,
			// which finds the streams and creates the consumers again.
			return fmt.Errorf("herald/nats: the streams were created again, not every consumer: %w", err)
		}
	}
	t.gen.Add(1)
	return nil
}

// recreateConsumers ensures the consumers of every running subscriber,
// after the streams were prepared again: a stream that was missing lost
// them, and with interest retention an event published before its handler's
// consumer exists again would not be kept for it. It returns the errors of
// the consumers it could not create (the subscriber of each retries too).
func (t *Transport) recreateConsumers(ctx context.Context) error {
	type consumerOf struct {
		s     *subscriber
		topic string
	}
	var all []consumerOf
	t.mu.Lock()
	for s := range t.subs {
		s.mu.Lock()
		if !s.feeds.Closed() {
			for topic := range s.consumers {
				all = append(all, consumerOf{s, topic})
			}
		}
		s.mu.Unlock()
	}
	t.mu.Unlock()
	var errs []error
	for _, c := range all {
		cons, _, err := c.s.ensureConsumer(ctx, c.topic)
		if err != nil {
			t.cfg.Logger.Warn("could not create a consumer again with the streams; its subscriber will retry",
				zap.String("handler", c.s.handler), zap.String("topic", c.topic), zap.Error(err))
			errs = append(errs, err)
			continue
		}
		c.s.cache(c.topic, cons)
	}
	return errors.Join(errs...)
}

// streamMissing reports whether err says that a stream is missing: no
// stream answered a publish, or the server said it does not exist.
func streamMissing(err error) bool {
	return err != nil && (errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, jetstream.ErrStreamNotFound))
}

// streamsLost marks the streams to be prepared again, if they are still
// those of generation gen (the ones that the failed operation used): an
// operation that started before they were prepared again does not make
// them prepared a second time.
func (t *Transport) streamsLost(gen uint64, err error) {
	if t.gen.Load() == gen && t.ready.Reset() {
		t.cfg.Logger.Warn("a stream is missing (a server with memory storage restarted, or the stream was deleted); preparing the streams again",
			zap.String("stream", t.cfg.StreamName), zap.String("poison_stream", t.poisonStreamName()), zap.Error(err))
	}
}

// withStreams runs op; if op fails because a stream is missing, it prepares
// the streams again and runs op once more.
func (t *Transport) withStreams(ctx context.Context, op func() error) error {
	gen := t.gen.Load()
	err := op()
	if !streamMissing(err) {
		return err
	}
	t.streamsLost(gen, err)
	if perr := t.prepare(ctx); perr != nil {
		return fmt.Errorf("%w (preparing the streams again: %v)", err, perr)
	}
	return op()
}

// ensureStream creates the stream, or checks an existing one.
func (t *Transport) ensureStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := t.js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = t.js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = t.js.Stream(ctx, cfg.Name) // another process created it
		} else if err == nil {
			t.cfg.Logger.Info("stream created", zap.String("stream", cfg.Name), zap.Strings("subjects", cfg.Subjects))
			return s, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("herald/nats: stream %q (subjects %v): %w", cfg.Name, cfg.Subjects, err)
	}
	have := s.CachedInfo().Config.Subjects
	for _, want := range cfg.Subjects {
		found := false
		for _, h := range have {
			if h == want || h == ">" {
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("herald/nats: existing stream %q has subjects %v, not %q: use another StreamName or SubjectPrefix", cfg.Name, have, want)
		}
	}
	return s, nil
}

// atLeast reports whether the version v ("2.9.10", "2.11.0-beta") is at least
// major.minor.
func atLeast(v string, major, minor int) bool {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return true // unknown format: let the server answer
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return true
	}
	return ma > major || ma == major && mi >= minor
}

// Publisher returns the transport's publisher. Its Publish(topic, msgs...)
// publishes each message on the subject "<SubjectPrefix>.<topic>" (one with an
// ordering key, transport.KeyOrderingKey, on its key's partition subject:
// see Config.Partitions) and returns nil only once the stream has
// acknowledged (PubAck) every one:
//
//   - Messages are sent at once, pipelined on the connection with those of
//     every other goroutine, each with a reply subject for its PubAck (no
//     PubAck within PubAckTimeout is an error); each message's Context bounds
//     its wait, and the wait for a publish slot when MaxPendingPublishes are
//     in flight.
//   - msg.UUID becomes the Nats-Msg-Id header: the stream drops a duplicate
//     within the DuplicateWindow, and a duplicate counts as published.
//   - Every metadata entry becomes a header, except Herald-Id when it equals
//     msg.UUID (receivers read it from Nats-Msg-Id); keys starting with
//     "Nats-" are reserved for the transport and skipped; a key or value that
//     cannot be a header (a line break in a value) is an error.
//   - A message larger than MaxPayload (or the server's max_payload), counting
//     the Herald-Id header a replay of it would carry, gives an error wrapping
//     [transport.ErrTooLarge]; on a closed transport, [transport.ErrClosed].
//   - On error, messages other than the one reported may have been stored.
//
// The transport creates its streams first if [Transport.Start] has not. The
// publisher's Close does nothing: the transport owns the connection.
func (t *Transport) Publisher() message.Publisher { return publisher{t} }

// Close stops every subscriber (their undelivered prefetched events are
// nacked, to be redelivered), refuses new publishes, waits for the PubAcks of
// the publishes in flight (at most [Config.RequestTimeout]; then they fail
// with [transport.ErrClosed], and a lost connection fails them at once),
// flushes the acks, and closes the connection if the
// transport dialled it (a Config.Conn stays open). It is safe to call more
// than once; later calls return the first call's result.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		close(t.closed)
		adapterkit.CloseAll(&t.mu, t.subs)
		t.acks.close(t.cfg.RequestTimeout)
		if t.nc.IsConnected() {
			if err := t.nc.FlushTimeout(t.cfg.RequestTimeout); err != nil {
				t.closeErr = fmt.Errorf("herald/nats: flush acks at close: %w", err)
			}
		}
		t.nc.RemoveStatusListener(t.status)
		<-t.statusDone
		t.closeConn()
	})
	return t.closeErr
}

func (t *Transport) closeConn() {
	if t.owned {
		t.nc.Close()
	}
}
