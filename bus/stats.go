package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/middleware"
	"github.com/heraldbus/herald/transport"
)

// HandlerStats is a snapshot of one handler on this bus: what its transport
// holds for it (Backlog, every process of the name together) and what this
// bus's workers did with it since it subscribed (the counters, this process
// only). The zero value is an empty snapshot.
type HandlerStats struct {
	Handler   string // the handler's name
	Event     string // the event it consumes
	Transport string // the transport's name (transport.SystemNamer), e.g. "memory" or "nats"

	// Backlog is the number of events waiting for the handler, its replays
	// included, as the transport counts them (memory: queued and waiting for
	// redelivery; NATS: the consumers' pending and ack-pending messages, so
	// those in flight too); -1 when the transport cannot tell
	// (transport.BacklogReporter) or its answer failed.
	Backlog int64
	// InFlight is the number of deliveries being processed now.
	InFlight int64

	Handled        uint64 // deliveries the handler completed (acked)
	Poisoned       uint64 // deliveries that went to the poison queue (acked)
	Delayed        uint64 // deliveries deferred (open circuit breaker, duplicate in flight): nacked, redelivered later
	Nacked         uint64 // deliveries nacked for another reason (shutdown, poison store down, middleware error)
	FailedAttempts uint64 // calls of the handler that returned an error or panicked

	// LastError is the error of the last failed attempt, and LastErrorAt
	// when it ended; "" and the zero time if none failed.
	LastError   string
	LastErrorAt time.Time

	// Latency gives percentiles of the duration of the handler's most recent
	// deliveries, from the start of the first attempt to the end of the last
	// (retries and their backoff included).
	Latency Latency
}

// Latency is a summary of recent processing times: the percentiles of the
// last Samples timed deliveries (at most [LatencySamples]; one delivery in 8
// is timed, the first always).
type Latency struct {
	Samples       int
	P50, P90, P99 time.Duration
	Max           time.Duration
}

// LatencySamples is how many recent deliveries of a handler
// [HandlerStats.Latency] summarises.
const LatencySamples = 512

// Stats returns a snapshot of every handler subscribed to this bus, in order
// of name. The counters are read without locks (atomics), and the backlog is
// one query to the transport per handler and topic (none in memory; on NATS a
// consumer info per consumer: one for the replays, nats.Config.Partitions+2
// for the event's, partitions included), bounded by ctx: cheap enough to call
// every second.
// When a backlog query fails, that handler's Backlog is -1 and the error,
// joined with the others, is returned beside the complete snapshot.
func (b *Bus) Stats(ctx context.Context) ([]HandlerStats, error) {
	subs := b.subscriptions()
	out := make([]HandlerStats, 0, len(subs))
	var errs []error
	for _, s := range subs {
		hs := s.stats.snapshot()
		hs.Handler, hs.Event, hs.Transport = s.name, s.event, b.system
		n, err := b.backlog(ctx, s.name, s.event)
		if err != nil {
			errs = append(errs, err)
		}
		hs.Backlog = n
		out = append(out, hs)
	}
	return out, errors.Join(errs...)
}

// subscriptions returns the bus's subscriptions, sorted by name.
func (b *Bus) subscriptions() []*Subscription {
	b.mu.Lock()
	subs := make([]*Subscription, 0, len(b.subs))
	for _, s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	slices.SortFunc(subs, func(x, y *Subscription) int {
		switch {
		case x.name < y.name:
			return -1
		case x.name > y.name:
			return 1
		}
		return 0
	})
	return subs
}

// backlog returns the backlog of handler on its event topic and its replay
// topic; -1 when the transport cannot tell or fails.
func (b *Bus) backlog(ctx context.Context, handler, eventName string) (int64, error) {
	br, ok := b.cfg.transport.(transport.BacklogReporter)
	if !ok {
		return -1, nil
	}
	var total int64
	for _, topic := range [2]string{eventName, transport.ReplayTopic(handler)} {
		n, err := br.Backlog(ctx, handler, topic)
		if err != nil {
			return -1, fmt.Errorf("herald: backlog of handler %q: %w", handler, err)
		}
		total += n
	}
	return total, nil
}

// handlerStats are a subscription's counters, updated by its chain with
// atomics only: nothing allocates unless an attempt fails.
type handlerStats struct {
	inFlight       atomic.Int64
	handled        atomic.Uint64
	poisoned       atomic.Uint64
	delayed        atomic.Uint64
	nacked         atomic.Uint64
	failedAttempts atomic.Uint64
	lastErr        atomic.Pointer[failure]
	samples        [LatencySamples]atomic.Int64 // durations in ns, a ring
	next           atomic.Uint64                // deliveries recorded
	tick           atomic.Uint64                // deliveries begun: one in sampleEvery is timed
}

type failure struct {
	err string
	at  time.Time
}

// delivery wraps the whole chain of a handler: it counts the deliveries in
// flight and their outcomes, and records their durations.
func (st *handlerStats) delivery(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		st.inFlight.Add(1)
		var r deliveryResult
		if (st.tick.Add(1)-1)%sampleEvery == 0 {
			r.start, r.timed = time.Since(clockEpoch), true // one delivery in sampleEvery is timed
		}
		defer st.ended(msg, &r)
		out, err := h(msg)
		r.err, r.normal = err, true
		return out, err
	}
}

// deliveryResult is what delivery's deferred call needs; normal is false when
// the handler never returned (runtime.Goexit: the bus then poisons the event).
type deliveryResult struct {
	start  time.Duration // since clockEpoch, when timed
	timed  bool
	err    error
	normal bool
}

// clockEpoch is the origin of the stats' monotonic clock readings: time.Since
// of a time.Time that has one reads the monotonic clock alone, where
// time.Now reads the wall clock too.
var clockEpoch = time.Now()

func (st *handlerStats) ended(msg *message.Message, r *deliveryResult) {
	st.inFlight.Add(-1)
	switch {
	case !r.normal || r.err == nil && event.Poisoned(msg):
		st.poisoned.Add(1)
	case r.err == nil:
		st.handled.Add(1)
	case middleware.IsDeferred(r.err):
		st.delayed.Add(1)
	default:
		st.nacked.Add(1)
	}
	if r.timed {
		i := st.next.Add(1) - 1
		st.samples[i%LatencySamples].Store(int64(time.Since(clockEpoch) - r.start))
	}
}

// sampleEvery is how often a delivery is timed for the latency percentiles:
// two clock reads per delivery cost more than the rest of the stats.
const sampleEvery = 8

// attempt wraps the handler itself: it counts failed attempts and keeps the
// last error.
func (st *handlerStats) attempt(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		if err != nil {
			st.failedAttempts.Add(1)
			st.lastErr.Store(&failure{err: err.Error(), at: time.Now()})
		}
		return out, err
	}
}

// snapshot reads the counters and summarises the latency ring.
func (st *handlerStats) snapshot() HandlerStats {
	hs := HandlerStats{
		InFlight:       st.inFlight.Load(),
		Handled:        st.handled.Load(),
		Poisoned:       st.poisoned.Load(),
		Delayed:        st.delayed.Load(),
		Nacked:         st.nacked.Load(),
		FailedAttempts: st.failedAttempts.Load(),
	}
	if f := st.lastErr.Load(); f != nil {
		hs.LastError, hs.LastErrorAt = f.err, f.at
	}
	n := int(min(st.next.Load(), LatencySamples))
	if n == 0 {
		return hs
	}
	d := make([]time.Duration, n)
	for i := range d {
		d[i] = time.Duration(st.samples[i].Load())
	}
	slices.Sort(d)
	at := func(p int) time.Duration { return d[(n-1)*p/100] }
	hs.Latency = Latency{Samples: n, P50: at(50), P90: at(90), P99: at(99), Max: d[n-1]}
	return hs
}
