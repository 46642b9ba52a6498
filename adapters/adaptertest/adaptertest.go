// Package adaptertest is the conformance suite every Herald transport runs: one
// exported [Run] that checks, through the public bus API, each point of the
// delivery contract a transport affects (docs/contract.md): fan-out, shared
// handler names, publish-then-receive, retries, poisoning of failures and of bad
// input, replay to one handler, ordering, isolation, graceful close, and (for
// durable transports) delivery after a handler comes back. Each case names the
// statement of the contract it proves; a failing case prints it.
//
//	func TestConformance(t *testing.T) {
//		adaptertest.Run(t, func(t *testing.T) adaptertest.Backend {
//			srv := startServer(t)
//			return func(t *testing.T) transport.Transport { return connect(t, srv) }
//		})
//	}
package adaptertest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/internal/testkit"
	"github.com/heraldbus/herald/middleware"
	"github.com/heraldbus/herald/transport"
)

// Backend returns a new transport on one shared broker each time it is called,
// as another process connecting to the same server would get. Each transport is
// given to one bus, which closes it.
type Backend func(t *testing.T) transport.Transport

// Option tunes the suite to what a transport promises.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	durable       bool
	keyedReplicas bool
	timeout       time.Duration
}

// Durable says the transport keeps events for a handler name while no process
// of that name runs (NATS does, memory does not); the suite then checks it.
func Durable() Option { return optionFunc(func(c *config) { c.durable = true }) }

// Timeout sets how long the suite waits for any one condition; default 20s.
func Timeout(d time.Duration) Option { return optionFunc(func(c *config) { c.timeout = d }) }

// Event is the event type the suite publishes.
type Event struct {
	Seq int    `json:"seq"`
	Tag string `json:"tag"`
	Pad string `json:"pad,omitempty"`
}

// Other is a second event type, for checks that types do not mix.
type Other struct {
	Seq int `json:"seq"`
}

// Run runs the suite. newBackend is called once per subtest, so every subtest
// has a broker (or a stream and subject prefix) of its own.
func Run(t *testing.T, newBackend func(t *testing.T) Backend, opts ...Option) {
	c := config{timeout: 20 * time.Second}
	for _, o := range opts {
		o.apply(&c)
	}
	s := &suite{cfg: c, newBackend: newBackend}
	for _, tc := range append(append(cases(s), lifecycleCases(s)...), trackCases(s)...) {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("contract: %s", tc.claim)
				}
			}()
			tc.fn(t, newBackend(t))
		})
	}
}

// testCase is one check of the suite and the statement of the contract it
// proves.
type testCase struct {
	name  string
	claim string
	fn    func(t *testing.T, be Backend)
}

func cases(s *suite) []testCase {
	return []testCase{
		{"FanOut", "fan-out: every handler name subscribed to an event type gets every event of it published afterwards", s.fanOut},
		{"SharedHandlerName", "fan-out: subscriptions of one handler name, in one process or several, share its events, each handled once", s.sharedName},
		{"SubscribeAfterStart", "fan-out: a handler subscribed on a started bus gets every event published after Subscribe returns", s.subscribeAfterStart},
		{"RetryThenSuccess", "failures: an error is retried, and a later success acknowledges the event with no poison record", s.retryThenSuccess},
		{"PermanentErrorPoisonedOnce", "failures: a permanent error is poisoned at once, with its handler, error, attempts and payload", s.permanentPoisoned},
		{"MalformedPayloadPoisoned", "bad input: a payload that cannot be decoded is poisoned at once, never retried", s.malformedPoisoned},
		{"ForeignMessagePoisoned", "bad input: a message without Herald metadata is poisoned at once, and replaying it gives the same result on every transport", s.foreignPoisoned},
		{"OtherEventOnSubjectPoisoned", "bad input: another event's message on the subject is poisoned at once", s.otherEventPoisoned},
		{"ReplayToFailedHandlerOnly", "poison records: a replay reaches the handler that failed and no other", s.replayOnlyFailed},
		{"ReplayWithoutConsumerKeepsRecord", "poison records: replaying to a handler nothing consumes fails with ErrNoHandler and keeps the record", s.replayWithoutConsumer},
		{"PurgeAndReplayRace", "poison records: racing purges and replays of one record end in nil or ErrPoisonNotFound, never a raw error", s.purgeReplayRace},
		{"PoisonListedInPages", "poison records: records are listed page by page, oldest first, each once", s.poisonPages},
		{"OrderingAtConcurrencyOne", "ordering: with concurrency 1 a handler sees events in publish order", s.ordering},
		{"BlockedHandlerIsolated", "isolation: a blocked handler delays no other handler", s.isolation},
		{"CorrelationAcrossHandlers", "metadata: an event published from a handler's ctx carries its correlation ID and the handled event's ID as causation", s.correlation},
		{"OversizeEventRefused", "bad input: an event larger than the limit is refused with ErrEventTooLarge", s.oversize},
		{"PublishAsync", "publish is a promise: an async publish's Ack reports nil only once the transport holds the event; bad input is refused at once; Close waits for outstanding publishes", s.publishAsync},
		{"PublishOptionsValidated", "bad input: publish options are validated the same way on every transport (ErrInvalidOption); a nil pointer event is ErrInvalidEvent; a batch can carry one ID per event (WithMessageIDs)", s.publishOptions},
		{"CloseDrainsAndRefuses", "graceful close: Close refuses new publishes with ErrClosed and lets in-flight handlers finish", s.closeDrains},
		{"CloseDeadlineNoPoison", "graceful close: an event interrupted by Close's deadline is never poisoned", s.closeDeadline},
		{"StopAndCloseFromHandler", "graceful close: Stop or Close called from inside a handler returns, and the bus stops", s.stopFromHandler},
		{"GoexitPoisonsAndGoesOn", "failures: runtime.Goexit in a handler poisons the event and the handler goes on with the next", s.goexit},
		{"MiddlewarePanicIsAnError", "failures: a panic in user middleware is recovered; the event comes back and is handled", s.middlewarePanic},
		{"DurableWhileHandlerDown", "durability: events published while a handler's process is down reach it when it returns (durable transports)", s.durable},
		{"CircuitBreakerDefersNotPoisons", "failures: an open circuit breaker defers events (redelivered later), never poisons them", s.breaker},
		{"DedupAcrossInstances", "failures: with a dedup store, a handler completes an event once across replicas", s.dedup},
		{"OrderingByKey", "ordering: with ordering by key, one key's events stay in publish order while keys run in parallel", s.orderingByKey},
		{"OrderingByKeyAcrossReplicas", "ordering: with ordering by key, one key's events are handled one after another in publish order, retries included, over every replica of the handler where the transport orders keys across replicas (in one process elsewhere); none is lost, and a poisoned event lets its key go on", s.orderingByKeyReplicas},
	}
}

type suite struct {
	cfg        config
	newBackend func(t *testing.T) Backend
}

var fastRetry = bus.WithDefaultRetry(middleware.RetryPolicy{InitialInterval: 5 * time.Millisecond, MaxInterval: 20 * time.Millisecond,
	RedeliveryDelay: 20 * time.Millisecond, MaxRedeliveryDelay: 50 * time.Millisecond})

func (s *suite) bus(t *testing.T, be Backend, opts ...bus.Option) *bus.Bus {
	t.Helper()
	return bustest.New(t, append([]bus.Option{bus.WithTransport(be(t)), fastRetry}, opts...)...)
}

func (s *suite) ctx(t *testing.T) context.Context { return bustest.Context(t, s.cfg.timeout) }

func (s *suite) publish(t *testing.T, b *bus.Bus, from, n int, tag string) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := bus.Publish(s.ctx(t), b, Event{Seq: i, Tag: tag}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
}

// down subscribes a handler of name that does nothing and stops it: the
// handler is down, and a durable transport keeps its state and its events.
func (s *suite) down(t *testing.T, b *bus.Bus, name string) {
	t.Helper()
	sub, err := bus.Subscribe(b, name, func(context.Context, Event) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Stop(s.ctx(t)); err != nil {
		t.Fatal(err)
	}
}

func (s *suite) poison(t *testing.T, b *bus.Bus, handler string, n int) []transport.PoisonRecord {
	t.Helper()
	return testkit.WaitPoison(t, b, handler, n, s.cfg.timeout)
}

// seqs returns the set of Seq values, failing on a value outside [0, n).
func seqs(t *testing.T, evs []Event, n int) map[int]int {
	t.Helper()
	m := map[int]int{}
	for _, e := range evs {
		if e.Seq < 0 || e.Seq >= n {
			t.Fatalf("unexpected event %+v", e)
		}
		m[e.Seq]++
	}
	return m
}

func (s *suite) fanOut(t *testing.T, be Backend) {
	b := s.bus(t, be)
	var recs []*bustest.Recorder[Event]
	for i := range 3 {
		recs = append(recs, bustest.Record[Event](t, b, fmt.Sprintf("fan.h%d", i)))
	}
	other := bustest.Record[Other](t, b, "fan.other")
	s.publish(t, b, 0, 50, "")
	for i, r := range recs {
		if got := seqs(t, r.Wait(t, 50, s.cfg.timeout), 50); len(got) != 50 {
			t.Errorf("handler %d got %d distinct events, want 50", i, len(got))
		}
	}
	if other.Len() != 0 {
		t.Errorf("a handler of another type got %d events", other.Len())
	}
}

func (s *suite) sharedName(t *testing.T, be Backend) {
	b1, b2 := s.bus(t, be), s.bus(t, be)
	var mu sync.Mutex
	handled := map[int][]int{}
	for i, b := range []*bus.Bus{b1, b2} {
		if _, err := bus.Subscribe(b, "shared.worker", func(ctx context.Context, e Event) error {
			mu.Lock()
			handled[e.Seq] = append(handled[e.Seq], i)
			mu.Unlock()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	const n = 100
	s.publish(t, b1, 0, n, "")
	bustest.Eventually(t, s.cfg.timeout, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == n
	}, "all %d events handled by the shared name", n)
	mu.Lock()
	defer mu.Unlock()
	for seq, by := range handled {
		if len(by) > 1 {
			t.Errorf("event %d handled %d times (by instances %v)", seq, len(by), by)
		}
	}
}

func (s *suite) subscribeAfterStart(t *testing.T, be Backend) {
	b := s.bus(t, be)
	r := bustest.Record[Event](t, b, "late.joiner")
	s.publish(t, b, 0, 5, "")
	r.Wait(t, 5, s.cfg.timeout)
}

func (s *suite) retryThenSuccess(t *testing.T, be Backend) {
	b := s.bus(t, be)
	var calls atomic.Int32
	r := &bustest.Recorder[Event]{Fail: func(context.Context, Event) error {
		if calls.Add(1) < 3 {
			return errors.New("transient")
		}
		return nil
	}}
	if _, err := bus.Subscribe(b, "retry.flaky", r.Handle); err != nil {
		t.Fatal(err)
	}
	s.publish(t, b, 0, 1, "")
	r.Wait(t, 1, s.cfg.timeout)
	if m := r.Metadata()[0]; m.Attempt != 3 || calls.Load() != 3 {
		t.Errorf("succeeded at attempt %d after %d calls, want 3 and 3", m.Attempt, calls.Load())
	}
	if recs, err := b.Poison().List(s.ctx(t), ""); err != nil || len(recs) != 0 {
		t.Errorf("poison after a retried success: %v %v", recs, err)
	}
}

func (s *suite) permanentPoisoned(t *testing.T, be Backend) {
	b := s.bus(t, be)
	var calls atomic.Int32
	if _, err := bus.Subscribe(b, "perm.fails", func(ctx context.Context, e Event) error {
		calls.Add(1)
		return bus.Permanent(errors.New("declined"))
	}); err != nil {
		t.Fatal(err)
	}
	ok := bustest.Record[Event](t, b, "perm.ok")
	if err := bus.Publish(s.ctx(t), b, Event{Seq: 1}, bus.WithCorrelationID("corr-1")); err != nil {
		t.Fatal(err)
	}
	ok.Wait(t, 1, s.cfg.timeout)
	rec := s.poison(t, b, "perm.fails", 1)[0]
	if calls.Load() != 1 {
		t.Errorf("handler called %d times for a permanent error", calls.Load())
	}
	if rec.Handler != "perm.fails" || rec.Attempts != 1 || !strings.Contains(rec.Error, "declined") ||
		rec.Event.CorrelationID != "corr-1" || rec.Event.Name != "adaptertest.Event" || len(rec.Payload) == 0 {
		t.Errorf("record = %+v", rec)
	}
	if got, err := b.Poison().Get(s.ctx(t), rec.ID); err != nil || got.ID != rec.ID {
		t.Errorf("Get(%q) = %+v, %v", rec.ID, got, err)
	}
}

// transport returns a new transport on the broker, started if it is a
// transport.Starter, to reach the broker without a bus. The caller closes it.
func (s *suite) transport(t *testing.T, be Backend) transport.Transport {
	t.Helper()
	tr := be(t)
	if st, ok := tr.(transport.Starter); ok {
		if err := st.Start(s.ctx(t)); err != nil {
			_ = tr.Close()
			t.Fatal(err)
		}
	}
	return tr
}

// raw publishes a message straight through a transport, as a foreign or
// broken publisher would.
func (s *suite) raw(t *testing.T, be Backend, topic string, payload string, md message.Metadata) {
	t.Helper()
	tr := s.transport(t, be)
	defer func() { _ = tr.Close() }()
	msg := message.NewMessage(event.NewID(), []byte(payload))
	for k, v := range md {
		msg.Metadata.Set(k, v)
	}
	msg.SetContext(s.ctx(t))
	if err := tr.Publisher().Publish(topic, msg); err != nil {
		t.Fatalf("raw publish: %v", err)
	}
}

func (s *suite) expectPoisonedAtOnce(t *testing.T, be Backend, handler string, publishBad func(), reason string) *bus.Bus {
	t.Helper()
	b := s.bus(t, be)
	var calls atomic.Int32
	r := &bustest.Recorder[Event]{Fail: func(context.Context, Event) error { calls.Add(1); return nil }}
	if _, err := bus.Subscribe(b, handler, r.Handle); err != nil {
		t.Fatal(err)
	}
	publishBad()
	s.publish(t, b, 0, 1, "after")
	r.Wait(t, 1, s.cfg.timeout)
	rec := s.poison(t, b, handler, 1)[0]
	if !strings.Contains(rec.Error, reason) || rec.Attempts != 1 {
		t.Errorf("record error %q (want it to mention %q), attempts %d", rec.Error, reason, rec.Attempts)
	}
	if calls.Load() != 1 {
		t.Errorf("handler called %d times, want 1 (the good event only)", calls.Load())
	}
	return b
}

func (s *suite) malformedPoisoned(t *testing.T, be Backend) {
	s.expectPoisonedAtOnce(t, be, "bad.json", func() {
		s.raw(t, be, "adaptertest.Event", `{"seq": "not a number"`, message.Metadata{
			transport.KeyID: event.NewID(), transport.KeyEvent: "adaptertest.Event"})
	}, "malformed payload")
}

func (s *suite) foreignPoisoned(t *testing.T, be Backend) {
	b := s.expectPoisonedAtOnce(t, be, "bad.foreign", func() {
		s.raw(t, be, "adaptertest.Event", `{"seq":1}`, nil)
	}, "not published by Herald")
	// Replaying the bad record delivers it to the handler again, which
	// refuses it again: a new record, on every transport.
	rec := s.poison(t, b, "bad.foreign", 1)[0]
	if err := b.Poison().Replay(s.ctx(t), rec.ID); err != nil {
		t.Fatalf("replay of a foreign record: %v", err)
	}
	bustest.Eventually(t, s.cfg.timeout, func() bool {
		recs, err := b.Poison().List(s.ctx(t), "bad.foreign")
		return err == nil && len(recs) == 1 && recs[0].ID != rec.ID
	}, "the replayed foreign message poisoned again")
}

func (s *suite) otherEventPoisoned(t *testing.T, be Backend) {
	s.expectPoisonedAtOnce(t, be, "bad.other", func() {
		s.raw(t, be, "adaptertest.Event", `{"seq":1}`, message.Metadata{
			transport.KeyID: event.NewID(), transport.KeyEvent: "adaptertest.Other"})
	}, `carries event "adaptertest.Other"`)
}

func (s *suite) replayOnlyFailed(t *testing.T, be Backend) {
	b := s.bus(t, be)
	var fixed atomic.Bool
	failing := testkit.FailUntil[Event](&fixed, bus.Permanent(errors.New("bug")))
	if _, err := bus.Subscribe(b, "replay.failing", failing.Handle); err != nil {
		t.Fatal(err)
	}
	good := bustest.Record[Event](t, b, "replay.good")
	s.publish(t, b, 0, 3, "")
	good.Wait(t, 3, s.cfg.timeout)
	recs := s.poison(t, b, "replay.failing", 3)
	fixed.Store(true)
	n, err := b.Poison().ReplayAll(s.ctx(t), "replay.failing")
	if err != nil || n != 3 {
		t.Fatalf("ReplayAll = %d, %v", n, err)
	}
	if got := seqs(t, failing.Wait(t, 3, s.cfg.timeout), 3); len(got) != 3 {
		t.Errorf("replayed %v", got)
	}
	for i, m := range failing.Metadata() {
		if m.Attempt != 1 || m.ID == "" {
			t.Errorf("replay %d metadata %+v", i, m)
		}
	}
	s.publish(t, b, 0, 1, "marker")
	evs := good.Wait(t, 4, s.cfg.timeout)
	if len(evs) != 4 || evs[3].Tag != "marker" {
		t.Errorf("the good handler saw a replay: %+v", evs)
	}
	if left, _ := b.Poison().List(s.ctx(t), ""); len(left) != 0 {
		t.Errorf("%d records left after replay (had %d)", len(left), len(recs))
	}
}

func (s *suite) ordering(t *testing.T, be Backend) {
	b := s.bus(t, be)
	r := bustest.Record[Event](t, b, "order.single")
	const n = 200
	s.publish(t, b, 0, n, "")
	for i, e := range r.Wait(t, n, s.cfg.timeout) {
		if e.Seq != i {
			t.Fatalf("event %d has seq %d: publish order broken", i, e.Seq)
		}
	}
}

func (s *suite) isolation(t *testing.T, be Backend) {
	b := s.bus(t, be)
	unblock := make(chan struct{})
	defer close(unblock)
	stuck := &bustest.Recorder[Event]{Fail: func(ctx context.Context, _ Event) error {
		select {
		case <-unblock:
		case <-ctx.Done():
		}
		return nil
	}}
	if _, err := bus.Subscribe(b, "iso.stuck", stuck.Handle); err != nil {
		t.Fatal(err)
	}
	free := bustest.Record[Event](t, b, "iso.free")
	s.publish(t, b, 0, 200, "")
	free.Wait(t, 200, s.cfg.timeout)
}

func (s *suite) correlation(t *testing.T, be Backend) {
	b := s.bus(t, be)
	if _, err := bus.Subscribe(b, "corr.forward", func(ctx context.Context, e Event) error {
		return bus.Publish(ctx, b, Other{Seq: e.Seq})
	}); err != nil {
		t.Fatal(err)
	}
	root := bustest.Record[Event](t, b, "corr.root")
	next := bustest.Record[Other](t, b, "corr.next")
	s.publish(t, b, 0, 1, "")
	root.Wait(t, 1, s.cfg.timeout)
	next.Wait(t, 1, s.cfg.timeout)
	rm, nm := root.Metadata()[0], next.Metadata()[0]
	if nm.CorrelationID != rm.ID || nm.CausationID != rm.ID || nm.ID == rm.ID || rm.CorrelationID != rm.ID || rm.CausationID != "" {
		t.Errorf("root %+v, consequence %+v", rm, nm)
	}
	if nm.Handler != "corr.next" || nm.PublishedAt.IsZero() {
		t.Errorf("consequence's metadata %+v: want its handler and publish time", nm)
	}
}

func (s *suite) oversize(t *testing.T, be Backend) {
	b := s.bus(t, be, bus.WithMaxEventSize(4096))
	r := bustest.Record[Event](t, b, "size.check")
	err := bus.Publish(s.ctx(t), b, Event{Seq: 0, Pad: strings.Repeat("x", 8000)})
	if !errors.Is(err, bus.ErrEventTooLarge) {
		t.Fatalf("publish of an 8 kB event with a 4 kB limit: %v", err)
	}
	s.publish(t, b, 1, 1, "small")
	if evs := r.Wait(t, 1, s.cfg.timeout); len(evs) != 1 || evs[0].Seq != 1 {
		t.Errorf("got %+v", evs)
	}
}
