package bus

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/middleware"
	"github.com/heraldbus/herald/transport"
)

// Subscribe registers fn as the handler name for events of type E and returns
// its [Subscription].
//
// name is the handler's identity: its queue (memory) or durable consumer (NATS),
// shared by every replica subscribing with the same name; the key of its poison
// records. It must be a valid NATS subject ([ErrInvalidName]) and unique on this
// bus ([ErrDuplicateHandler]). E's name is validated here ([ErrInvalidName]),
// and E must be able to cross a process boundary with the codec
// ([ErrInvalidEvent]).
//
// On a started bus the handler consumes before Subscribe returns: every event of
// type E published afterwards reaches it at least once. Before Start, it begins
// with Start. On a closed bus Subscribe returns [ErrClosed].
//
// fn runs through the middleware chain (bus-wide middleware, then the
// handler's, then the default chain: see package middleware), on the handler's
// workers ([WithConcurrency], default 1: events in publish order). A panic in
// fn or in any middleware is recovered and handled as an error; a
// runtime.Goexit in fn (t.Fatal in a test) poisons the event and the worker
// goes on.
func Subscribe[E any](b *Bus, name string, fn func(context.Context, E) error, opts ...SubscribeOption) (*Subscription, error) {
	if fn == nil {
		return nil, invalid("nil handler func")
	}
	if err := transport.ValidName(name); err != nil {
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
	terminal := event.New[E](et.name, fn, b.cfg.codec, decode)
	return b.subscribe(name, et.name, terminal, sc)
}

// Subscription is one handler's registration on a bus.
type Subscription struct {
	b     *Bus
	name  string
	event string
	cfg   subConfig
	chain message.HandlerFunc
	stats *handlerStats // for Bus.Stats (stats.go)
	serve bool          // a request handler (Handle): answers requests (request.go)
	// userMW: the chain has the user's middleware, which may write a
	// message's Metadata, so an in-process delivery gets a map of its own.
	userMW bool
	// bind is what every in-process delivery to the handler shares: its
	// context, name and the bus's codec.
	bind *event.Binding

	mu        sync.Mutex
	started   bool
	stopping  bool
	stop      chan struct{} // closed: take no more new events (memory: drain what is queued)
	abort     chan struct{} // closed: stop draining too
	abortOnce sync.Once
	ctx       context.Context
	cancel    context.CancelFunc // cancels in-flight handlers
	wg        sync.WaitGroup
	workers   chan struct{} // closed when every worker has returned
	done      chan struct{} // closed when every worker has returned and the transport side is released
	doneOnce  sync.Once
	release   []func()
	left      int // memory: events still queued when the workers ended
}

func (b *Bus) subscribe(name, event string, terminal message.HandlerFunc, sc subConfig) (*Subscription, error) {
	if sc.request && (sc.retry != nil || sc.dedup != nil || sc.keyOrdered || sc.from != nil) {
		return nil, invalid("WithRetry, WithDedup, WithOrderingByKey and WithStartFrom do not apply to a request handler")
	}
	policy := b.cfg.retry
	if sc.retry != nil {
		policy = *sc.retry
	}
	if sc.keyOrdered {
		policy = policy.InProcess() // a delayed retry would put the event behind its key's later ones
	}
	st := &handlerStats{}
	chain := b.instrument(name, event, st, terminal, func(h message.HandlerFunc) message.HandlerFunc {
		return buildChain(b.cfg, name, policy, sc, h)
	})
	s := &Subscription{b: b, name: name, event: event, cfg: sc, chain: chain, stats: st, serve: sc.request,
		userMW: len(sc.middleware)+len(b.cfg.middleware) > 0,
		stop:   make(chan struct{}), abort: make(chan struct{}), workers: make(chan struct{}), done: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.bind = binding(s.ctx, name, b.cfg.codec)

	b.mu.Lock()
	if b.state.Load() >= stateClosing {
		b.mu.Unlock()
		return nil, ErrClosed
	}
	if _, dup := b.subs[name]; dup {
		b.mu.Unlock()
		return nil, fmt.Errorf("%w: %q", ErrDuplicateHandler, name)
	}
	if sc.request {
		for _, o := range b.subs {
			if o.serve && o.event == event {
				b.mu.Unlock()
				return nil, fmt.Errorf("%w: %q answers %s already", ErrDuplicateHandler, o.name, event)
			}
		}
	}
	if b.deleting[name] {
		b.mu.Unlock()
		return nil, fmt.Errorf("%w: %q is being deleted (DeleteHandler)", ErrDuplicateHandler, name)
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
			s.halt()
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
//	(recover) → bus-wide (WithMiddleware) → handler's (WithHandlerMiddleware) →
//	[tracking] → Recover → Correlation → Poison → [Dedup] → Retry → [RateLimit] →
//	[CircuitBreaker] → Logging → [tracking] → [Timeout] → terminal
//
// Bracketed ones are on when their option is given; a request handler
// (sc.request, Handle) has neither Poison, Dedup, Retry nor tracking. Package
// middleware's doc explains why each sits where it does. The outermost
// recover turns a panic in the user's own middleware into an error (the
// event is then nacked).
func buildChain(cfg config, name string, policy middleware.RetryPolicy, sc subConfig, terminal message.HandlerFunc) message.HandlerFunc {
	log := cfg.logger
	chain := terminal
	if sc.timeout > 0 {
		chain = middleware.Timeout(sc.timeout)(chain)
	}
	if cfg.tracker != nil && !sc.request {
		chain = cfg.tracker.attempt(policy.WithDefaults().MaxAttempts)(chain)
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
	if !sc.request { // a request's caller decides what a failure means
		chain = middleware.Retry(policy, log)(chain)
		if sc.dedup != nil {
			chain = middleware.Dedup(sc.dedup, sc.dedupTTL, log)(chain)
		}
		chain = middleware.Poison(cfg.poison, log)(chain)
	}
	chain = middleware.Correlation(chain)
	chain = middleware.Recover(chain)
	if cfg.tracker != nil && !sc.request {
		chain = cfg.tracker.delivery(chain)
	}
	if len(sc.middleware)+len(cfg.middleware) == 0 {
		return chain
	}
	for i := len(sc.middleware) - 1; i >= 0; i-- {
		chain = sc.middleware[i](chain)
	}
	for i := len(cfg.middleware) - 1; i >= 0; i-- {
		chain = cfg.middleware[i](chain)
	}
	return recoverOutermost(chain)
}

// recoverOutermost turns a panic that escapes the user's middleware into an
// error: the event is nacked and comes back.
func recoverOutermost(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) (out []*message.Message, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("herald: middleware panicked: %v", r)
			}
		}()
		return h(msg)
	}
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
	if s.serve {
		if err := s.startServe(); err != nil {
			return err
		}
	} else if s.b.local != nil {
		if err := s.startLocal(); err != nil {
			return err
		}
	} else if err := s.startRemote(); err != nil {
		return err
	}
	s.started = true
	go func() {
		s.wg.Wait()
		close(s.workers)
		for _, r := range s.release {
			r()
		}
		s.doneOnce.Do(func() { close(s.done) })
	}()
	return nil
}

// goWorker runs loop on a new worker goroutine, registered so that Stop and
// Close called from a handler know they are.
func (s *Subscription) goWorker(loop func()) {
	s.wg.Go(func() {
		id := goid()
		s.b.workers.Store(id, s)
		defer s.b.workers.Delete(id)
		loop()
	})
}

// process runs the chain on msg and settles it with settle(failed, delay),
// delay being the redelivery delay the chain asked for (0: the transport's
// own). A
// runtime.Goexit in the handler (which no recover stops) ends this goroutine:
// process then poisons the event and starts a replacement worker running
// again, so that the handler goes on.
func (s *Subscription) process(msg *message.Message, settle func(failed bool, delay time.Duration), again func()) {
	normal := false
	defer func() {
		if normal {
			return
		}
		// A panic that escaped the chain (the chain recovers its own, so this
		// is a bug of ours or of the transport's Ack) is poisoned like a
		// Goexit, and does not kill the process.
		err := errors.New("herald: handler called runtime.Goexit (t.Fatal, t.SkipNow?)")
		what := "handler called runtime.Goexit; event poisoned, worker replaced"
		if r := recover(); r != nil {
			err = &handlers.PanicError{Value: r, Stack: string(debug.Stack())}
			what = "panic outside the middleware chain; event poisoned, worker replaced"
		}
		rec := middleware.NewPoisonRecord(msg, err)
		perr := s.b.cfg.poison.PutPoison(context.WithoutCancel(msg.Context()), rec)
		s.b.cfg.logger.Error(what,
			zap.String("handler", s.name), zap.String("event_id", msg.UUID), zap.Error(err), zap.NamedError("store_error", perr))
		if perr != nil || !msg.Ack() {
			settle(true, 0)
		}
		s.goWorker(again)
	}()
	_, err := s.chain(msg)
	failed := err != nil || !msg.Ack()
	normal = true
	var delay time.Duration
	if failed {
		delay = s.nacked(msg, err)
	}
	settle(failed, delay)
}

// nacked logs a nack and returns the redelivery delay the chain asked for.
func (s *Subscription) nacked(msg *message.Message, err error) time.Duration {
	if s.ctx.Err() != nil {
		return 0 // shutdown: expected
	}
	var re *middleware.RedeliveryError
	if errors.As(err, &re) {
		return re.Delay // a delayed retry: Retry logged it
	}
	s.b.cfg.logger.Warn("event nacked, it will be redelivered",
		zap.String("handler", s.name), zap.String("event_id", msg.UUID), zap.Error(err))
	return 0
}

// Stop stops this handler alone: it takes no more events, in-flight events may
// finish until ctx ends, then their ctx is cancelled (an interrupted event is
// nacked, not poisoned). On the memory transport, where the queue is the
// events' only home, the handler first works through the events already
// queued for it until ctx ends (or, when ctx has no deadline, until the bus's
// shutdown timeout); Stop then returns an error wrapping [ErrUnhandled] that
// counts those it could not handle. The handler's name is then free for a new
// Subscribe.
//
// Stop returns ctx's error if handlers were still running 100ms after ctx
// ended and their ctx was cancelled. Once they have returned, Stop waits for
// the transport to release the handler's consumer (a last offset commit, a
// group leave), which the transport bounds by its own timeouts, not by ctx.
// It is safe to call more than once. Called
// from one of the bus's handlers, Stop cannot wait for that handler to return:
// it starts the stop and returns nil at once; watch [Subscription.Done].
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
	if s.b.inWorker() {
		ctx, cancel := s.b.shutdownCtx(context.WithoutCancel(ctx))
		go func() {
			defer cancel()
			if err := s.wait(ctx); err != nil {
				s.b.cfg.logger.Error("stop from a handler", zap.String("handler", s.name), zap.Error(err))
			}
		}()
		return nil
	}
	ctx, cancel := s.b.shutdownCtx(ctx)
	defer cancel()
	return s.wait(ctx)
}

// wait waits for the workers to end until ctx ends, then cancels them; once
// they have returned, it waits for the transport to release the handler's
// queue or consumer.
//
// Only the workers are held to ctx and stopGrace: the release (a Kafka
// member's last commit and LeaveGroup, a NATS consumer's drain) is the
// transport's, bounded by its own request timeouts, and may well take longer
// than stopGrace on a loaded machine. Counting it against the handlers
// reported a handler that had returned as "still running".
func (s *Subscription) wait(ctx context.Context) error {
	var cause error
	select {
	case <-s.workers:
	case <-ctx.Done():
		s.abortOnce.Do(func() { close(s.abort) })
		s.cancel() // in-flight handlers: give up; those that honour ctx return at once
		t := time.NewTimer(stopGrace)
		defer t.Stop()
		select {
		case <-s.workers:
			cause = ctx.Err()
		case <-t.C:
			return fmt.Errorf("herald: handler %q still running after stop deadline: %w", s.name, ctx.Err())
		}
	}
	<-s.done
	s.cancel()
	return s.unhandled(cause)
}

// unhandled reports the events a memory queue still held when its workers
// ended.
func (s *Subscription) unhandled(cause error) error {
	if s.left == 0 {
		return nil
	}
	err := fmt.Errorf("%w: handler %q: %d events", ErrUnhandled, s.name, s.left)
	if cause != nil {
		err = fmt.Errorf("%w: %w", err, cause)
	}
	s.b.cfg.logger.Error("events not handled at stop", zap.String("handler", s.name), zap.Int("events", s.left))
	return err
}

// halt stops a subscription that Start could not finish.
func (s *Subscription) halt() {
	s.mu.Lock()
	if !s.stopping {
		s.stopping = true
		close(s.stop)
	}
	s.mu.Unlock()
	s.abortOnce.Do(func() { close(s.abort) })
	s.cancel()
}

// stopGrace is how long Stop waits, after its ctx ended and in-flight
// handlers were cancelled, for them to return.
const stopGrace = 100 * time.Millisecond
