package bus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/adapters/memory"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/internal/membroker"
	"github.com/heraldbus/herald/transport"
)

const (
	stateNew int32 = iota
	stateStarted
	stateClosing
	stateClosed
)

// Bus is a typed publish-subscribe event bus. Create one with [New], register
// handlers with [Subscribe] (before or after Start), [Bus.Start] it, [Publish]
// events, and [Bus.Close] it. All methods are safe for concurrent use.
type Bus struct {
	cfg       config
	local     *membroker.Handle // non-nil when the transport is in-process
	publisher message.Publisher
	jsonCodec bool
	system    string    // the transport's name in telemetry and Stats
	obs       *observer // nil unless WithTracing or WithMetrics (observe.go)

	state    atomic.Int32
	startErr error      // why Start failed; Start then fails again
	mu       sync.Mutex // guards subs and state transitions
	subs     map[string]*Subscription
	deleting map[string]bool // names DeleteHandler is deleting: Subscribe waits its turn
	closed   chan struct{}
	closeMu  sync.Mutex // serialises Close
	workers  sync.Map   // goroutine ID → *Subscription, for the bus's workers
	async    asyncState // outstanding PublishAsync calls
	tracker  *tracker   // nil unless WithTracking (track.go)
}

// New returns a bus configured by opts. With no options it has a memory
// transport, a no-op zap logger, the JSON codec, a 1 MiB event size limit and
// the default middleware chain (recover, correlation, poison, retry, logging:
// see package middleware) with [middleware.DefaultRetryPolicy]. Invalid
// options give an error wrapping [ErrInvalidOption].
func New(opts ...Option) (*Bus, error) {
	cfg := config{maxEventSize: DefaultMaxEventSize, shutdownTimeout: DefaultShutdownTimeout}
	for _, o := range opts {
		if o == nil {
			return nil, invalid("nil option")
		}
		if err := o.applyBus(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.transport == nil {
		cfg.transport = memory.New()
	}
	if cfg.logger == nil {
		cfg.logger = zap.NewNop()
	}
	if cfg.codec == nil {
		cfg.codec = handlers.JSON{}
	}
	if cfg.poison == nil {
		if ps, ok := cfg.transport.(transport.PoisonStore); ok {
			cfg.poison = ps
		} else {
			cfg.poison = membroker.NewPoisonMap()
		}
	}
	if cfg.asyncWindow == 0 {
		cfg.asyncWindow = DefaultAsyncWindow
	}
	b := &Bus{cfg: cfg, subs: map[string]*Subscription{}, deleting: map[string]bool{}, closed: make(chan struct{})}
	b.async = asyncState{slots: make(chan struct{}, cfg.asyncWindow), onError: cfg.asyncOnError}
	_, b.jsonCodec = cfg.codec.(handlers.JSON)
	b.local = membroker.HandleOf(cfg.transport)
	b.publisher = cfg.transport.Publisher()
	if err := b.initObserve(); err != nil {
		return nil, err
	}
	if cfg.trackTTL > 0 {
		t, err := newTracker(b)
		if err != nil {
			return nil, err
		}
		b.tracker = t
		b.cfg.tracker = t
	}
	return b, nil
}

// Start starts the transport (if it needs starting) and every handler
// subscribed so far, and returns once they all consume: an event published
// after Start returns reaches them. Handlers subscribed later start at once.
// Start on a started bus does nothing; on a closed bus it returns [ErrClosed].
// If a handler cannot start, Start stops the ones it started and returns the
// error; the bus can then only be closed (a later Start returns that error).
func (b *Bus) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state.Load() {
	case stateStarted:
		return nil
	case stateClosing, stateClosed:
		return ErrClosed
	}
	if b.startErr != nil {
		return fmt.Errorf("herald: an earlier Start failed; close the bus: %w", b.startErr)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if s, ok := b.cfg.transport.(transport.Starter); ok {
		if err := s.Start(ctx); err != nil {
			return fmt.Errorf("herald: start transport: %w", err)
		}
	}
	if b.tracker != nil {
		b.tracker.start()
	}
	var started []*Subscription
	for _, s := range b.subs {
		if err := s.start(); err != nil {
			for _, o := range started {
				o.halt()
			}
			b.startErr = fmt.Errorf("herald: start handler %q: %w", s.name, err)
			return b.startErr
		}
		started = append(started, s)
	}
	b.state.Store(stateStarted)
	b.cfg.logger.Info("bus started", zap.Int("handlers", len(b.subs)))
	return nil
}

// Close stops the bus: Publish returns [ErrClosed] from now on (except from a
// handler that is finishing, so that it can publish its consequences), every
// handler stops taking new events, and in-flight handlers may finish until ctx
// ends; then their ctx is cancelled. An event interrupted by shutdown is
// nacked, never poisoned.
//
// On the memory transport, where the bus is the events' only home, each
// handler first works through the events already queued for it, until ctx
// ends (or, when ctx has no deadline, until the shutdown timeout,
// [WithShutdownTimeout]); if events are left, Close returns an error wrapping
// [ErrUnhandled] that says how many, of which handlers, and logs it. On NATS
// they wait in the stream.
//
// Close then closes the transport. It returns ctx's error if handlers were
// still running 100ms after ctx ended and their ctx was cancelled (they are
// left to return on their own). Close is safe to call more than once and
// concurrently; later calls wait for the first and return nil. Called from
// one of the bus's handlers, Close cannot wait for that handler: it starts
// the shutdown and returns nil at once; watch [Bus.Done].
func (b *Bus) Close(ctx context.Context) error {
	if b.inWorker() {
		ctx, cancel := b.shutdownCtx(context.WithoutCancel(ctx))
		go func() {
			defer cancel()
			if err := b.close(ctx); err != nil {
				b.cfg.logger.Error("close from a handler", zap.Error(err))
			}
		}()
		return nil
	}
	ctx, cancel := b.shutdownCtx(ctx)
	defer cancel()
	return b.close(ctx)
}

func (b *Bus) close(ctx context.Context) error {
	b.closeMu.Lock()
	defer b.closeMu.Unlock()
	b.mu.Lock()
	if b.state.Load() >= stateClosing {
		b.mu.Unlock()
		return nil
	}
	b.state.Store(stateClosing)
	subs := make([]*Subscription, 0, len(b.subs))
	for _, s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()

	errs := make([]error, len(subs))
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Go(func() { errs[i] = s.Stop(ctx) })
	}
	wg.Wait()
	if err := b.waitAsync(ctx); err != nil {
		errs = append(errs, err)
	}
	if b.tracker != nil {
		b.tracker.stop(ctx)
	}
	b.state.Store(stateClosed)
	b.stopObserving()
	if err := b.cfg.transport.Close(); err != nil {
		errs = append(errs, fmt.Errorf("herald: close transport: %w", err))
	}
	close(b.closed)
	err := errors.Join(errs...)
	b.cfg.logger.Info("bus closed", zap.Error(err))
	return err
}

// shutdownCtx bounds a ctx without deadline by the shutdown timeout.
func (b *Bus) shutdownCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, b.cfg.shutdownTimeout)
}

// inWorker reports whether the calling goroutine is one of the bus's workers.
func (b *Bus) inWorker() bool {
	_, ok := b.workers.Load(goid())
	return ok
}

// goid returns the calling goroutine's ID, read from its stack header
// ("goroutine 123 [running]:"). Workers read it once when they start; Stop
// and Close once per call.
func goid() uint64 {
	var buf [64]byte
	n := runtime.Stack(buf[:], false)
	f := bytes.Fields(buf[:n])
	if len(f) < 2 {
		return 0
	}
	id, _ := strconv.ParseUint(string(f[1]), 10, 64)
	return id
}

// Run starts the bus, waits for ctx to end, and closes the bus with a fresh
// deadline of the shutdown timeout ([WithShutdownTimeout]). It returns nil after
// a clean shutdown, and Close's error otherwise (such as [ErrUnhandled]). Use
// it from main.
func (b *Bus) Run(ctx context.Context) error {
	if err := b.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.shutdownTimeout)
	defer cancel()
	return b.Close(cctx)
}

// Done is closed when Close has finished.
func (b *Bus) Done() <-chan struct{} { return b.closed }

// Logger returns the bus's logger.
func (b *Bus) Logger() *zap.Logger { return b.cfg.logger }

// eventType is what the bus knows of an event's Go type, computed once.
type eventType struct {
	name    string
	err     error // the name is invalid
	plan    event.SizePlan
	planErr error // JSON can never encode the type
}

var eventTypes sync.Map // reflect.Type → *eventType

func typeOf[E any]() *eventType {
	t := reflect.TypeFor[E]()
	if v, ok := eventTypes.Load(t); ok {
		return v.(*eventType)
	}
	et := &eventType{}
	et.name, et.err = event.NameOf[E]()
	if et.err == nil {
		et.plan, et.planErr = event.PlanJSON(t)
	}
	v, _ := eventTypes.LoadOrStore(t, et)
	return v.(*eventType)
}
