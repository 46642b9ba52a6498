package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/internal/membroker"
	"github.com/heraldbus/herald/transport"
)

// Delivery tracking (WithTracking, Bus.Track): for each event and each handler,
// where its delivery stands.

// Delivery is what delivery tracking knows of one event's delivery to one
// handler: its state, attempt, last error and times (see
// [transport.Delivery]).
type Delivery = transport.Delivery

// DeliveryState is where a delivery stands: [StateQueued], [StateRunning],
// [StateRetrying], [StateDone] or [StatePoisoned]. Its String is the
// lower-case name, and so is its JSON.
type DeliveryState = transport.DeliveryState

// The states of a delivery, in the order a delivery goes through them.
const (
	StateQueued   = transport.StateQueued   // published, not yet started
	StateRunning  = transport.StateRunning  // an attempt is running
	StateRetrying = transport.StateRetrying // an attempt failed; another will follow
	StateDone     = transport.StateDone     // the handler succeeded
	StatePoisoned = transport.StatePoisoned // failed for good: in the poison queue
)

// MaxTrackingTTL is the longest time to live [WithTracking] accepts.
const MaxTrackingTTL = 30 * 24 * time.Hour

var (
	// ErrNoTracking: Track on a bus built without [WithTracking].
	ErrNoTracking = errors.New("herald: delivery tracking is off")
	// ErrUnknownEvent: Track of an event ID with no tracking record: never
	// published or handled with tracking on, or its records expired.
	ErrUnknownEvent = errors.New("herald: no tracking record for event")
)

// WithTracking makes the bus record, for each event and each handler, where
// its delivery stands, so that [Bus.Track] can tell: queued at publish (for
// each handler the bus knows consumes the event), running when an attempt
// starts, retrying after a failed attempt that another will follow (with the
// attempt and the error), then done or poisoned; with the times of each.
// Records live for ttl after their last change (0 < ttl <= [MaxTrackingTTL],
// else [ErrInvalidOption]).
//
// Where records live: in the transport when it keeps them
// ([transport.Tracker]; NATS: a JetStream key-value bucket shared by every
// process on the stream), otherwise in this process's memory (memory,
// RabbitMQ, Kafka), where Track sees only what this process published or
// handled. Expired records are removed.
//
// Cost: at most one store write per state change (three for a delivery that
// succeeds at once: queued, running, done). In process memory it is a map
// update, made by the caller. Writes to a remote store are queued and made in
// the background, off the handler's path (a handler waits only when that
// queue is full); the states of one delivery that come within 10ms of each
// other are merged into one write, so a handler that succeeds quickly costs
// one KV put on NATS. Close writes what is queued before it closes the
// transport.
//
// A handler that another service runs, on a broker, appears once the
// publisher's bus knows it (NATS: its durable consumer exists; the list is
// read again at most every few seconds), or once it starts the event. A
// poison replay ([PoisonQueue.Replay]) is not tracked again: the event stays
// poisoned.
func WithTracking(ttl time.Duration) Option {
	return busOption(func(c *config) error {
		if ttl <= 0 || ttl > MaxTrackingTTL {
			return invalid("tracking ttl %v not in (0, %v]", ttl, MaxTrackingTTL)
		}
		c.trackTTL = ttl
		return nil
	})
}

// Tracking is where the deliveries of one event stand ([Bus.Track]).
type Tracking struct {
	EventID string // the event's ID
	Event   string // the event's name
	// Handlers holds one delivery per handler known to consume the event,
	// sorted by handler name.
	Handlers []Delivery
}

// Finished reports whether every handler's delivery reached its last state
// (done or poisoned). A Tracking with no handler is not finished.
func (t Tracking) Finished() bool {
	if len(t.Handlers) == 0 {
		return false
	}
	for _, d := range t.Handlers {
		if !d.State.Final() {
			return false
		}
	}
	return true
}

// Track returns where the deliveries of the event with ID id stand. A
// publisher that sets the ID ([WithMessageID]) can hand it to a client, who
// polls Track until [Tracking.Finished].
//
// Errors: [ErrNoTracking] on a bus without [WithTracking], [ErrUnknownEvent]
// when nothing is recorded for id (never published with tracking on to a
// handler the bus knew, or expired), ctx's error, or the store's.
//
// Track in the process that wrote a record sees it at once, even before the
// store has it: Publish, then Track, finds the event queued. Another process
// sees it once it is written (on NATS, within milliseconds).
func (b *Bus) Track(ctx context.Context, id string) (Tracking, error) {
	if b.tracker == nil {
		return Tracking{}, ErrNoTracking
	}
	if err := ctx.Err(); err != nil {
		return Tracking{}, err
	}
	// The pending records first: one written meanwhile is in the store by
	// the time the store is read.
	pending := b.tracker.pendingOf(id)
	ds, err := b.tracker.store.Deliveries(ctx, id)
	if err != nil {
		return Tracking{}, fmt.Errorf("herald: track %q: %w", id, err)
	}
	ds = overlay(ds, pending)
	if len(ds) == 0 {
		return Tracking{}, fmt.Errorf("%w: %q", ErrUnknownEvent, id)
	}
	return Tracking{EventID: id, Event: ds[0].Event, Handlers: ds}, nil
}

// tracker writes the bus's tracking records.
type tracker struct {
	b     *Bus
	store transport.DeliveryStore
	// direct: the store is in process memory; puts are made by the caller.
	// Otherwise they go through lanes to writer goroutines, a record's lane
	// chosen by its event and handler so that one delivery's records are
	// written in order.
	direct bool
	lanes  []chan transport.Delivery
	mu     sync.RWMutex // read-held while sending on a lane; closing takes it
	closed bool
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
	// pending holds, by event ID, the records queued on the lanes and not
	// yet written, merged per handler, so that Track in this process sees
	// what it wrote at once.
	pmu     sync.Mutex
	pending map[string][]pendingRecord

	// On a broker, the handlers of each event other processes run, for
	// queued records: read from the transport (transport.Handlers) at most
	// every handlersRefresh, in the background.
	hmu     sync.Mutex
	known   map[string][]string // event name → handler names
	loaded  time.Time
	loading bool
}

// pendingRecord is what the lanes hold of one delivery: the merge of n
// records not yet written.
type pendingRecord struct {
	d transport.Delivery
	n int
}

const (
	trackLanes      = 8
	trackBatch      = 64                    // records a writer writes at once
	trackLinger     = 10 * time.Millisecond // how long a writer gathers records
	trackLaneSize   = 256
	trackPutTimeout = 5 * time.Second
	handlersRefresh = 5 * time.Second
)

func newTracker(b *Bus) (*tracker, error) {
	t := &tracker{b: b}
	if tr, ok := b.cfg.transport.(transport.Tracker); ok {
		s, err := tr.DeliveryStore(b.cfg.trackTTL)
		if err != nil {
			return nil, fmt.Errorf("herald: tracking store: %w", err)
		}
		t.store = s
	} else {
		t.store = membroker.NewTrackMap(b.cfg.trackTTL, nil)
	}
	_, t.direct = t.store.(*membroker.TrackMap)
	return t, nil
}

// start starts the writers (bus Start).
func (t *tracker) start() {
	if t.direct || t.lanes != nil {
		return
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.lanes = make([]chan transport.Delivery, trackLanes)
	for i := range t.lanes {
		ch := make(chan transport.Delivery, trackLaneSize)
		t.lanes[i] = ch
		t.wg.Go(func() { t.writer(ch) })
	}
}

// writer writes the records of one lane. After a record comes, it gathers
// what else comes within trackLinger (up to trackBatch records), merging the
// records of each delivery into one, then writes them all at once: a
// delivery whose states come within the linger (a handler that succeeds
// quickly: queued, running, done) costs one write, not three.
func (t *tracker) writer(ch <-chan transport.Delivery) {
	batch := make([]pendingRecord, 0, trackBatch)
	linger := time.NewTimer(trackLinger)
	linger.Stop()
	for d := range ch {
		batch = append(batch[:0], pendingRecord{d, 1})
		linger.Reset(trackLinger)
	gather:
		for len(batch) < trackBatch {
			select {
			case d, ok := <-ch:
				if !ok {
					break gather
				}
				batch = merged(batch, d)
			case <-linger.C:
				break gather
			}
		}
		linger.Stop()
		if len(batch) == 1 {
			t.write(batch[0])
			continue
		}
		var wg sync.WaitGroup // one record per delivery: the writes may overlap
		for _, r := range batch {
			wg.Go(func() { t.write(r) })
		}
		wg.Wait()
	}
}

// merged adds d to batch, merged into the record of its delivery if batch
// holds one.
func merged(batch []pendingRecord, d transport.Delivery) []pendingRecord {
	for i := range batch {
		if batch[i].d.EventID == d.EventID && batch[i].d.Handler == d.Handler {
			batch[i].d = batch[i].d.Merge(d)
			batch[i].n++
			return batch
		}
	}
	return append(batch, pendingRecord{d, 1})
}

func (t *tracker) write(r pendingRecord) {
	d := r.d
	defer t.written(d.EventID, d.Handler, r.n)
	ctx, cancel := context.WithTimeout(t.ctx, trackPutTimeout)
	defer cancel()
	if err := t.store.PutDelivery(ctx, d); err != nil && t.ctx.Err() == nil {
		t.b.cfg.logger.Warn("cannot write a tracking record", zap.String("event_id", d.EventID),
			zap.String("handler", d.Handler), zap.Stringer("state", d.State), zap.Error(err))
	}
}

// stop writes what is queued, until ctx ends (bus Close).
func (t *tracker) stop(ctx context.Context) {
	if t.lanes == nil {
		return
	}
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		for _, ch := range t.lanes {
			close(ch)
		}
	}
	t.mu.Unlock()
	done := make(chan struct{})
	go func() {
		t.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		t.cancel() // the writers fail their puts at once and return
		<-done
		t.b.cfg.logger.Warn("tracking records not written before Close's deadline", zap.Error(ctx.Err()))
	}
	t.cancel()
}

// put records d: at once in process memory, else queued for its lane. When
// wait is false and the lane is full, d is dropped (a later record of the
// delivery supersedes it).
func (t *tracker) put(d transport.Delivery, wait bool) {
	if t.direct {
		_ = t.store.PutDelivery(context.Background(), d)
		return
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed || t.lanes == nil {
		return
	}
	t.queue(d)
	ch := t.lanes[lane(d.EventID, d.Handler)]
	if wait {
		ch <- d
		return
	}
	select {
	case ch <- d:
	default:
		t.written(d.EventID, d.Handler, 1) // dropped
	}
}

// queue adds d to the pending records.
func (t *tracker) queue(d transport.Delivery) {
	t.pmu.Lock()
	defer t.pmu.Unlock()
	if t.pending == nil {
		t.pending = map[string][]pendingRecord{}
	}
	rs := t.pending[d.EventID]
	for i := range rs {
		if rs[i].d.Handler == d.Handler {
			rs[i].d = rs[i].d.Merge(d)
			rs[i].n++
			return
		}
	}
	t.pending[d.EventID] = append(rs, pendingRecord{d, 1})
}

// written removes n records of (id, handler) from the pending ones, once
// they are written (or dropped).
func (t *tracker) written(id, handler string, n int) {
	t.pmu.Lock()
	defer t.pmu.Unlock()
	rs := t.pending[id]
	for i := range rs {
		if rs[i].d.Handler != handler {
			continue
		}
		if rs[i].n -= n; rs[i].n > 0 {
			return
		}
		rs = append(rs[:i], rs[i+1:]...)
		if len(rs) == 0 {
			delete(t.pending, id)
		} else {
			t.pending[id] = rs
		}
		return
	}
}

// pendingOf returns the records of id this process queued and has not
// written yet.
func (t *tracker) pendingOf(id string) []pendingRecord {
	t.pmu.Lock()
	defer t.pmu.Unlock()
	return slices.Clone(t.pending[id])
}

// overlay merges the pending records rs into ds, the store's records of
// their event.
func overlay(ds []transport.Delivery, rs []pendingRecord) []transport.Delivery {
	if len(rs) == 0 {
		return ds
	}
next:
	for _, r := range rs {
		for i := range ds {
			if ds[i].Handler == r.d.Handler {
				ds[i] = ds[i].Merge(r.d)
				continue next
			}
		}
		ds = append(ds, r.d)
	}
	slices.SortFunc(ds, func(a, b transport.Delivery) int { return strings.Compare(a.Handler, b.Handler) })
	return ds
}

// lane hashes an event ID and handler name (FNV-1a) to a lane.
func lane(id, handler string) int {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h = (h ^ uint32(id[i])) * 16777619
	}
	for i := 0; i < len(handler); i++ {
		h = (h ^ uint32(handler[i])) * 16777619
	}
	return int(h % trackLanes)
}

// queued records the event as queued for every handler known to consume it.
func (t *tracker) queued(ev transport.Event, wait bool) {
	now := time.Now()
	for _, h := range t.handlersOf(ev.Name) {
		t.put(transport.Delivery{EventID: ev.ID, Event: ev.Name, Handler: h, State: StateQueued,
			Queued: ev.PublishedAt, Updated: now}, wait)
	}
}

// handlersOf returns the handlers known to consume the event name: in
// process, the broker's; on a broker, this bus's and those the transport
// lists (refreshed in the background when older than handlersRefresh).
func (t *tracker) handlersOf(name string) []string {
	if l := t.b.local; l != nil {
		return l.GroupsOf(name)
	}
	var out []string
	t.b.mu.Lock()
	for _, s := range t.b.subs {
		if s.event == name && !s.serve {
			out = append(out, s.name)
		}
	}
	t.b.mu.Unlock()
	if _, ok := t.b.cfg.transport.(transport.Handlers); !ok {
		return out
	}
	t.hmu.Lock()
	known := t.known[name]
	if !t.loading && time.Since(t.loaded) > handlersRefresh {
		t.mu.RLock()
		if !t.closed && t.lanes != nil {
			t.loading = true
			t.wg.Go(t.loadHandlers)
		}
		t.mu.RUnlock()
	}
	t.hmu.Unlock()
	for _, h := range known {
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

func (t *tracker) loadHandlers() {
	ctx, cancel := context.WithTimeout(t.ctx, trackPutTimeout)
	defer cancel()
	hs, err := t.b.cfg.transport.(transport.Handlers).Handlers(ctx)
	known := map[string][]string{}
	for _, h := range hs {
		for _, topic := range h.Topics {
			known[topic] = append(known[topic], h.Name)
		}
	}
	t.hmu.Lock()
	defer t.hmu.Unlock()
	t.loading = false
	t.loaded = time.Now()
	if err != nil {
		t.b.cfg.logger.Debug("cannot list handlers for tracking", zap.Error(err))
		return
	}
	t.known = known
}

// attempt is the per-attempt half of tracking, around the handler: running
// when an attempt starts; done when it succeeds; retrying when it fails and
// another attempt follows (a failure that poisons the event is recorded by
// the delivery half, once the poison record is stored).
func (t *tracker) attempt(maxAttempts int) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			meta, ok := event.Metadata(msg)
			if !ok || meta.ID == "" || meta.Name == "" {
				return h(msg)
			}
			now := time.Now()
			d := transport.Delivery{EventID: meta.ID, Event: meta.Name, Handler: meta.Handler, State: StateRunning,
				Attempt: meta.Attempt, Queued: meta.PublishedAt, Started: now, Updated: now}
			t.put(d, true)
			out, err := h(msg)
			d.Updated = time.Now()
			if err == nil {
				d.State, d.Finished = StateDone, d.Updated
				t.put(d, true)
				return out, nil
			}
			d.LastError = err.Error()
			event.SetFailure(msg, d.LastError)
			if !event.Stopping(msg) && (handlers.IsPermanent(err) || meta.Attempt >= maxAttempts) {
				return out, err // poisoned next, or nacked if the record cannot be stored
			}
			d.State = StateRetrying
			t.put(d, true)
			return out, err
		}
	}
}

// delivery is the per-delivery half, outside Poison: poisoned once the
// poison record is stored.
func (t *tracker) delivery(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		if event.Poisoned(msg) {
			if meta, ok := event.Metadata(msg); ok && meta.ID != "" && meta.Name != "" {
				now := time.Now()
				t.put(transport.Delivery{EventID: meta.ID, Event: meta.Name, Handler: meta.Handler, State: StatePoisoned,
					Attempt: meta.Attempt, LastError: event.Failure(msg), Queued: meta.PublishedAt, Updated: now, Finished: now}, true)
			}
		}
		return out, err
	}
}
