package bus

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/adapters/memory"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/middleware"
)

// Subscribe registers fn as the handler name for events of type E and returns
// its [Subscription].
//
// name is the handler's identity: its queue (memory) or durable consumer (NATS),
// shared by every replica subscribing with the same name; the key of its poison
// records. It must be a valid NATS subject ([ErrInvalidName]) and unique on this
// bus ([ErrDuplicateHandler]). E's name is validated here ([ErrInvalidName]),
// and E must be encodable by the codec ([ErrInvalidEvent]).
//
// On a started bus the handler consumes before Subscribe returns: every event of
// type E published afterwards reaches it at least once. Before Start, it begins
// with Start. On a closed bus Subscribe returns [ErrClosed].
//
// fn runs through the middleware chain (bus-wide middleware, then the
// handler's, then the default chain: see package middleware), on the handler's
// workers ([WithConcurrency], default 1: events in publish order).
func Subscribe[E any](b *Bus, name string, fn func(context.Context, E) error, opts ...SubscribeOption) (*Subscription, error) {
	if fn == nil {
		return nil, invalid("nil handler func")
	}
	if err := handlers.ValidateName(name); err != nil {
		return nil, fmt.Errorf("handler %q: %w", name, err)
	}
	et := typeOf[E]()
	if et.err != nil {
		return nil, et.err
	}
	if b.jsonCodec && et.planErr != nil {
		return nil, et.planErr
	}
	sc := subConfig{concurrency: 1}
	for _, o := range opts {
		if o == nil {
			return nil, invalid("nil subscribe option")
		}
		if err := o.applySub(&sc); err != nil {
			return nil, err
		}
	}
	decode := sc.decode || b.cfg.encodeAlways
	terminal := handlers.New[E](et.name, fn, b.cfg.codec, decode)
	return b.subscribe(name, et.name, terminal, sc)
}

// Subscription is one handler's registration on a bus.
type Subscription struct {
	b     *Bus
	name  string
	event string
	cfg   subConfig
	chain message.HandlerFunc

	mu       sync.Mutex
	started  bool
	stopping bool
	stop     chan struct{} // closed: take no more events
	ctx      context.Context
	cancel   context.CancelFunc // cancels in-flight handlers
	wg       sync.WaitGroup
	done     chan struct{} // closed when every worker has returned and the transport side is released
	doneOnce sync.Once
	release  []func()
}

func (b *Bus) subscribe(name, event string, terminal message.HandlerFunc, sc subConfig) (*Subscription, error) {
	policy := b.cfg.retry
	if sc.retry != nil {
		policy = *sc.retry
	}
	chain := buildChain(b.cfg, name, policy, sc, terminal)
	s := &Subscription{b: b, name: name, event: event, cfg: sc, chain: chain,
		stop: make(chan struct{}), done: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	b.mu.Lock()
	if b.state.Load() >= stateClosing {
		b.mu.Unlock()
		return nil, ErrClosed
	}
	if _, dup := b.subs[name]; dup {
		b.mu.Unlock()
		return nil, fmt.Errorf("%w: %q", ErrDuplicateHandler, name)
	}
	b.subs[name] = s
	running := b.state.Load() == stateStarted
	b.mu.Unlock()
	// Joining the transport may do I/O (NATS creates a consumer): not under
	// b.mu, so that Publish, Close and other Subscribes are not held up. A
	// Close in between stops s first; start then refuses.
	if running {
		if err := s.start(); err != nil {
			b.mu.Lock()
			if b.subs[name] == s {
				delete(b.subs, name)
			}
			b.mu.Unlock()
			s.abort()
			s.doneOnce.Do(func() { close(s.done) })
			return nil, fmt.Errorf("herald: start handler %q: %w", name, err)
		}
	}
	b.cfg.logger.Debug("handler subscribed", zap.String("handler", name), zap.String("event", event),
		zap.Int("concurrency", sc.concurrency))
	return s, nil
}

// buildChain wraps terminal in the handler's middleware, outermost first:
//
//	bus-wide (WithMiddleware) → handler's (WithHandlerMiddleware) → Recover →
//	Correlation → Poison → [Dedup] → Retry → [RateLimit] → [CircuitBreaker] →
//	Logging → [Timeout] → terminal
//
// Bracketed ones are on when their option is given. package middleware's doc
// explains why each sits where it does.
func buildChain(cfg config, name string, policy RetryPolicy, sc subConfig, terminal message.HandlerFunc) message.HandlerFunc {
	log := cfg.logger
	chain := terminal
	if sc.timeout > 0 {
		chain = middleware.Timeout(sc.timeout)(chain)
	}
	chain = middleware.Logging(log, sc.slow)(chain)
	if sc.breaker != nil {
		bc := *sc.breaker
		if bc.Name == "" {
			bc.Name = name
		}
		chain = middleware.CircuitBreaker(bc, log)(chain)
	}
	if sc.rate > 0 {
		chain = middleware.RateLimit(sc.rate, sc.burst)(chain)
	}
	chain = middleware.Retry(policy, log)(chain)
	if sc.dedup != nil {
		chain = middleware.Dedup(sc.dedup, sc.dedupTTL, log)(chain)
	}
	chain = middleware.Poison(cfg.poison, log)(chain)
	chain = middleware.Correlation(chain)
	chain = middleware.Recover(chain)
	for i := len(sc.middleware) - 1; i >= 0; i-- {
		chain = sc.middleware[i](chain)
	}
	for i := len(cfg.middleware) - 1; i >= 0; i-- {
		chain = cfg.middleware[i](chain)
	}
	return chain
}

// Name returns the handler's name.
func (s *Subscription) Name() string { return s.name }

// Event returns the name of the event type the handler receives.
func (s *Subscription) Event() string { return s.event }

// Done is closed once the subscription has stopped and released its queue or
// consumer.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// start joins the transport and starts the workers.
func (s *Subscription) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return nil
	}
	if s.stopping {
		return ErrClosed
	}
	if s.b.local != nil {
		if err := s.startLocal(); err != nil {
			return err
		}
	} else if err := s.startRemote(); err != nil {
		return err
	}
	s.started = true
	go func() {
		s.wg.Wait()
		for _, r := range s.release {
			r()
		}
		s.doneOnce.Do(func() { close(s.done) })
	}()
	return nil
}

func (s *Subscription) startLocal() error {
	events, err := s.b.local.Join(s.name, s.event)
	if err != nil {
		return s.b.mapErr(err)
	}
	s.release = append(s.release, events.Leave)
	if s.cfg.keyOrdered && s.cfg.concurrency > 1 {
		s.startKeyedLocal(events)
		return nil
	}
	for range s.cfg.concurrency {
		s.wg.Go(func() { s.runLocal(events) })
	}
	return nil
}

// runLocal is one worker. Replays arrive on the same queue (SendTo).
func (s *Subscription) runLocal(events *memory.Queue) {
	for {
		// Stop wins over a waiting event.
		select {
		case <-s.stop:
			return
		default:
		}
		select {
		case it := <-events.C():
			s.handleLocal(events, it)
		case <-s.stop:
			return
		case <-events.Done():
			return
		}
	}
}

func (s *Subscription) handleLocal(q *memory.Queue, it memory.Item) {
	var msg *message.Message
	if le, ok := it.Value.(*localEvent); ok {
		meta := le.meta
		meta.Handler = s.name
		meta.Attempt = 1 + it.Redeliveries
		var md message.Metadata
		if le.extra != nil {
			md = maps.Clone(le.extra)
		}
		msg = handlers.NewMessage(s.ctx, meta, le.value, le.d.Payload, md, s.b.cfg.codec)
	} else {
		// Published through the watermill publisher, or a replay: decode.
		msg = &message.Message{UUID: it.ID, Payload: it.Payload, Metadata: maps.Clone(it.Metadata)}
		if msg.Metadata == nil {
			msg.Metadata = message.Metadata{}
		}
		msg.SetContext(s.ctx)
		handlers.Bind(msg, s.name, 1+it.Redeliveries)
	}
	if _, err := s.chain(msg); err != nil || !msg.Ack() {
		s.nacked(msg, err)
		q.Nack(it)
	}
}

func (s *Subscription) nacked(msg *message.Message, err error) {
	if s.ctx.Err() != nil {
		return // shutdown: expected
	}
	fields := []zap.Field{zap.String("handler", s.name), zap.String("event_id", msg.UUID), zap.Error(err)}
	s.b.cfg.logger.Warn("event nacked, it will be redelivered", fields...)
}

func (s *Subscription) startRemote() error {
	sub, err := s.b.cfg.transport.Subscriber(s.name)
	if err != nil {
		return err
	}
	s.release = append(s.release, func() { _ = sub.Close() })
	if s.cfg.keyOrdered && s.cfg.concurrency > 1 {
		// One channel per topic, so that the dispatcher sees stream order;
		// asking the transport for as many messages in flight as the workers
		// and their inboxes hold, so that keys run in parallel.
		ctx := handlers.WithInFlight(s.ctx, s.cfg.concurrency*(keyedInbox+1))
		events, err := sub.Subscribe(ctx, s.event)
		if err == nil {
			var replays <-chan *message.Message
			replays, err = sub.Subscribe(ctx, replayTopic(s.name))
			if err == nil {
				s.startKeyedRemote(events, replays)
				return nil
			}
		}
		s.cancel()
		_ = sub.Close()
		return err
	}
	for range s.cfg.concurrency {
		events, err := sub.Subscribe(s.ctx, s.event)
		if err != nil {
			s.cancel()
			_ = sub.Close()
			return err
		}
		replays, err := sub.Subscribe(s.ctx, replayTopic(s.name))
		if err != nil {
			s.cancel()
			_ = sub.Close()
			return err
		}
		s.wg.Go(func() { s.runRemote(events, replays) })
	}
	return nil
}

func (s *Subscription) runRemote(events, replays <-chan *message.Message) {
	for {
		select {
		case <-s.stop:
			return
		default:
		}
		msg, ok := s.nextRemote(&events, &replays)
		if !ok {
			return
		}
		s.handleRemote(msg)
	}
}

// nextRemote returns the next message of events or replays, forgetting a
// channel once it is closed; false when both are closed or s is stopping.
func (s *Subscription) nextRemote(events, replays *<-chan *message.Message) (*message.Message, bool) {
	for *events != nil || *replays != nil {
		select {
		case msg, ok := <-*events:
			if ok {
				return msg, true
			}
			*events = nil
		case msg, ok := <-*replays:
			if ok {
				return msg, true
			}
			*replays = nil
		case <-s.stop:
			return nil, false
		}
	}
	return nil, false
}

func (s *Subscription) handleRemote(msg *message.Message) {
	attempt := 1
	if n, ok := deliveryCount(msg); ok {
		attempt = n
	}
	handlers.Bind(msg, s.name, attempt)
	if _, err := s.chain(msg); err != nil || !msg.Ack() {
		s.nacked(msg, err)
		msg.Nack()
	}
}

// deliveryCount reads the transport's delivery count, if it reports one in
// the message metadata (the NATS adapter does).
func deliveryCount(msg *message.Message) (int, bool) {
	n, err := strconv.Atoi(msg.Metadata.Get(handlers.KeyDeliveryCount))
	return n, err == nil && n > 0
}

// Stop stops this handler alone: it takes no more events, in-flight events may
// finish until ctx ends, then their ctx is cancelled (an interrupted event is
// nacked, not poisoned). The handler's name is then free for a new Subscribe.
// Stop returns ctx's error if handlers were still running 100ms after ctx
// ended and their ctx was cancelled. It is safe to call more than once.
func (s *Subscription) Stop(ctx context.Context) error {
	s.mu.Lock()
	if !s.stopping {
		s.stopping = true
		close(s.stop)
	}
	started := s.started
	s.mu.Unlock()

	s.b.mu.Lock()
	if s.b.subs[s.name] == s {
		delete(s.b.subs, s.name)
	}
	s.b.mu.Unlock()

	if !started {
		s.cancel()
		s.doneOnce.Do(func() { close(s.done) })
		return nil
	}
	select {
	case <-s.done:
		s.cancel()
		return nil
	case <-ctx.Done():
	}
	s.cancel() // in-flight handlers: give up; those that honour ctx return at once
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-s.done:
		return nil
	case <-t.C:
		return fmt.Errorf("herald: handler %q still running after stop deadline: %w", s.name, ctx.Err())
	}
}

// abort stops a subscription that Start could not finish.
func (s *Subscription) abort() {
	s.mu.Lock()
	if !s.stopping {
		s.stopping = true
		close(s.stop)
	}
	s.mu.Unlock()
	s.cancel()
}

// stopGrace is how long Stop waits, after its ctx ended and in-flight
// handlers were cancelled, for them to return.
const stopGrace = 100 * time.Millisecond
