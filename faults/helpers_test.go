package faults_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/heraldbus/herald/adapters/memory"
	hnats "github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/internal/notify"
	"github.com/heraldbus/herald/internal/testkit"
	"github.com/heraldbus/herald/middleware"
	"github.com/heraldbus/herald/transport"
)

// Event is what every fault test publishes; Seq identifies it.
type Event struct {
	Seq int    `json:"seq"`
	Tag string `json:"tag,omitempty"`
	Pad string `json:"pad,omitempty"`
}

const eventName = "faults.Event"

func (Event) EventName() string { return eventName }

// wait bounds any one condition a test waits for.
const wait = 60 * time.Second

// fastRetry is the retry policy of the suite: 3 attempts, a few ms apart.
var fastRetry = middleware.RetryPolicy{MaxAttempts: 3, InitialInterval: 5 * time.Millisecond, MaxInterval: 20 * time.Millisecond}

// ctxFor returns a context that ends after d or when t ends.
func ctxFor(t testing.TB, d time.Duration) context.Context { return bustest.Context(t, d) }

// logger returns a logger into t's log at Warn when FAULTS_LOG is set, and a
// no-op logger otherwise (the suite provokes thousands of warnings).
func logger(t testing.TB) *zap.Logger {
	if os.Getenv("FAULTS_LOG") == "" {
		return zap.NewNop()
	}
	return zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
}

// ---- counting ----

// tally counts, per event Seq, how often a handler was called and how often it
// succeeded, and checks that the event ID seen for a Seq never changes.
type tally struct {
	mu      sync.Mutex
	calls   map[int]int
	ok      map[int]int
	ids     map[int]string
	pads    map[int]int // len(Pad) of the last success
	badIDs  []string
	changed notify.Changed
}

func newTally() *tally {
	return &tally{calls: map[int]int{}, ok: map[int]int{}, ids: map[int]string{}, pads: map[int]int{}}
}

// handler returns a handler func that counts every call and, when fail (if
// any) returns nil, a success. fail gets the call number of this Seq (1 for
// the first).
func (c *tally) handler(fail func(ctx context.Context, e Event, call int) error) func(context.Context, Event) error {
	return func(ctx context.Context, e Event) error {
		m, _ := handlers.FromContext(ctx)
		c.mu.Lock()
		c.calls[e.Seq]++
		n := c.calls[e.Seq]
		if id, ok := c.ids[e.Seq]; ok && id != m.ID {
			c.badIDs = append(c.badIDs, fmt.Sprintf("seq %d: id %q then %q", e.Seq, id, m.ID))
		}
		c.ids[e.Seq] = m.ID
		c.mu.Unlock()
		if fail != nil {
			if err := fail(ctx, e, n); err != nil {
				return err
			}
		}
		c.mu.Lock()
		c.ok[e.Seq]++
		c.pads[e.Seq] = len(e.Pad)
		c.changed.Broadcast()
		c.mu.Unlock()
		return nil
	}
}

// distinct is how many different events succeeded.
func (c *tally) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ok)
}

// duplicates is how many successes were of an event that had succeeded before.
func (c *tally) duplicates() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, k := range c.ok {
		n += k - 1
	}
	return n
}

// callsOf returns the number of calls of seq.
func (c *tally) callsOf(seq int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[seq]
}

// totalCalls returns the number of calls of every seq.
func (c *tally) totalCalls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, k := range c.calls {
		n += k
	}
	return n
}

// padOf returns the length of the Pad of seq's last success.
func (c *tally) padOf(seq int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pads[seq]
}

// has reports whether seq succeeded.
func (c *tally) has(seq int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ok[seq] > 0
}

// waitFor waits until cond (called with c locked) holds, or fails t after
// timeout. It wakes on every success, without polling.
func (c *tally) waitFor(t testing.TB, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if !c.changed.Wait(&c.mu, cond, ctx.Done()) {
		c.mu.Lock()
		defer c.mu.Unlock()
		t.Fatalf("%s: not within %v (%d distinct events succeeded, missing %s)", what, timeout, len(c.ok), missing(c.ok, -1))
	}
}

// waitDistinct waits until n different events succeeded.
func (c *tally) waitDistinct(t testing.TB, n int, timeout time.Duration, what string) {
	t.Helper()
	c.waitFor(t, timeout, func() bool { return len(c.ok) >= n }, what)
}

// check fails t if the handler saw an event ID change for a Seq or an event
// outside [0, n).
func (c *tally) check(t testing.TB, n int, what string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.badIDs) > 0 {
		t.Errorf("%s: an event came back with another ID: %v", what, c.badIDs[:min(5, len(c.badIDs))])
	}
	for seq := range c.calls {
		if seq < 0 || seq >= n {
			t.Errorf("%s: unexpected event seq %d", what, seq)
		}
	}
}

// missing describes the seqs in [0, n) absent from m (n < 0: below the
// largest key), at most 10 of them.
func missing(m map[int]int, n int) string {
	if n < 0 {
		for k := range m {
			n = max(n, k+1)
		}
	}
	var out []string
	count := 0
	for i := range n {
		if m[i] == 0 {
			count++
			if len(out) < 10 {
				out = append(out, fmt.Sprint(i))
			}
		}
	}
	if count == 0 {
		return "none below the largest seen"
	}
	return fmt.Sprintf("%d: %s", count, strings.Join(out, ","))
}

// ---- figures ----

// figures is one line of RELIABILITY.md: what a fault test measured.
type figures struct {
	fault     string
	transport string
	handlers  int           // handlers that must each get every event
	sent      int           // distinct events published (Publish returned nil)
	delivered int           // distinct (event, handler) pairs handled successfully
	dups      int           // successful handlings beyond the first of a pair
	poisoned  int           // poison records
	recover   time.Duration // time from the fault to full recovery (see the test)
	extra     []string      // key=value
}

func (f *figures) add(key string, v any) {
	if d, ok := v.(time.Duration); ok {
		v = d.Round(time.Millisecond)
	}
	f.extra = append(f.extra, fmt.Sprintf("%s=%v", key, v))
}

// log writes the parseable FIGURES line.
func (f figures) log(t testing.TB) {
	t.Helper()
	t.Logf("FIGURES fault=%s transport=%s handlers=%d sent=%d expected=%d delivered=%d duplicates=%d poisoned=%d recover=%v %s",
		f.fault, f.transport, f.handlers, f.sent, f.sent*f.handlers, f.delivered, f.dups, f.poisoned,
		f.recover.Round(time.Millisecond), strings.Join(f.extra, " "))
}

// ---- backends ----

// backend is a broker that buses connect to: one memory broker, or one
// embedded nats-server. Each transport it returns is a new "process".
type backend struct {
	name string
	mem  *memory.Transport // the broker's root handle (memory)
	srv  *natstest.Server  // nats
	cfg  hnats.Config      // the config of every NATS transport

	mu sync.Mutex
	nc *natsgo.Conn // an inspection connection (NATS), made on first use
}

// memoryBackend returns a memory broker, closed when t ends.
func memoryBackend(t testing.TB, opts ...memory.Option) *backend {
	root := memory.New(opts...)
	t.Cleanup(func() { _ = root.Close() })
	return &backend{name: "memory", mem: root}
}

// natsConfig is the suite's NATS configuration: a short AckWait and nack
// delays so that redeliveries happen within seconds, and a fast reconnect.
func natsConfig(url string) hnats.Config {
	return hnats.Config{
		URL:         url,
		AckWait:     2 * time.Second,
		NakDelay:    20 * time.Millisecond,
		MaxNakDelay: 200 * time.Millisecond,
		NATSOptions: []natsgo.Option{natsgo.ReconnectWait(50 * time.Millisecond)},
	}
}

// natsBackend starts an embedded nats-server (JetStream, temp store), closed
// when t ends, with the suite's config changed by edit.
func natsBackend(t testing.TB, edit ...func(*hnats.Config)) *backend {
	t.Helper()
	srv := natstest.New(t)
	cfg := natsConfig(srv.URL())
	for _, e := range edit {
		e(&cfg)
	}
	be := &backend{name: "nats", srv: srv, cfg: cfg}
	t.Cleanup(func() {
		be.mu.Lock()
		defer be.mu.Unlock()
		if be.nc != nil {
			be.nc.Close()
		}
	})
	return be
}

// eachBackend runs fn on memory and on NATS, as subtests.
func eachBackend(t *testing.T, fn func(t *testing.T, be *backend), natsEdit ...func(*hnats.Config)) {
	t.Run("memory", func(t *testing.T) { fn(t, memoryBackend(t)) })
	t.Run("nats", func(t *testing.T) { fn(t, natsBackend(t, natsEdit...)) })
}

func (be *backend) isNATS() bool { return be.srv != nil }

// transport returns a new transport on the broker (another process). A bus
// that owns it closes it; it is closed when t ends otherwise.
func (be *backend) transport(t testing.TB) transport.Transport {
	t.Helper()
	if !be.isNATS() {
		tr := be.mem.Peer()
		t.Cleanup(func() { _ = tr.Close() })
		return tr
	}
	return natsTransport(t, be.cfg)
}

// natsTransport returns a new NATS transport with cfg and the suite's
// logger (another process), closed when t ends if no bus closed it first.
func natsTransport(t testing.TB, cfg hnats.Config) *hnats.Transport {
	t.Helper()
	cfg.Logger = logger(t)
	tr, err := hnats.New(cfg)
	if err != nil {
		t.Fatalf("nats.New: %v", err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// busOpts are the options of every bus of the suite, then opts.
func (be *backend) busOpts(t testing.TB, tr transport.Transport, opts ...bus.Option) []bus.Option {
	return append([]bus.Option{bus.WithTransport(tr), bus.WithDefaultRetry(fastRetry), bus.WithLogger(logger(t))}, opts...)
}

// bus returns a started bus on a new transport, closed when t ends.
func (be *backend) bus(t testing.TB, opts ...bus.Option) *bus.Bus {
	t.Helper()
	return bustest.New(t, be.busOpts(t, be.transport(t), opts...)...)
}

// unstartedBus returns a bus on a new transport that the test starts and
// closes itself.
func (be *backend) unstartedBus(t testing.TB, opts ...bus.Option) (*bus.Bus, transport.Transport) {
	t.Helper()
	tr := be.transport(t)
	b, err := bus.New(be.busOpts(t, tr, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return b, tr
}

// conn returns the backend's inspection connection (NATS only).
func (be *backend) conn(t testing.TB) *natsgo.Conn {
	t.Helper()
	be.mu.Lock()
	defer be.mu.Unlock()
	if be.nc == nil {
		nc, err := natsgo.Connect(be.srv.URL(), natsgo.MaxReconnects(-1), natsgo.ReconnectWait(50*time.Millisecond))
		if err != nil {
			t.Fatalf("inspection connection: %v", err)
		}
		be.nc = nc
	}
	return be.nc
}

func (be *backend) js(t testing.TB) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(be.conn(t))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func (be *backend) streamName() string {
	if be.cfg.StreamName != "" {
		return be.cfg.StreamName
	}
	return hnats.DefaultStreamName
}

func (be *backend) subject(topic string) string {
	p := be.cfg.SubjectPrefix
	if p == "" {
		p = hnats.DefaultSubjectPrefix
	}
	return p + "." + topic
}

// streamState returns the state of the events stream.
func (be *backend) streamState(t testing.TB) jetstream.StreamState {
	t.Helper()
	ctx := ctxFor(t, 10*time.Second)
	s, err := be.js(t).Stream(ctx, be.streamName())
	if err != nil {
		t.Fatalf("stream %s: %v", be.streamName(), err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", be.streamName(), err)
	}
	return info.State
}

// streamMsgs returns how many messages the events stream holds.
func (be *backend) streamMsgs(t testing.TB) uint64 { return be.streamState(t).Msgs }

// consumer returns the info of the durable consumer of handler on topic.
// The transport names consumers itself; its description names the handler.
func (be *backend) consumer(t testing.TB, handler, topic string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx := ctxFor(t, 10*time.Second)
	s, err := be.js(t).Stream(ctx, be.streamName())
	if err != nil {
		t.Fatalf("stream %s: %v", be.streamName(), err)
	}
	want := fmt.Sprintf("handler %q, topic %q", handler, topic)
	var names []string
	var found *jetstream.ConsumerInfo
	lister := s.ListConsumers(ctx)
	for ci := range lister.Info() { // to the end: the lister's goroutine must return
		if strings.HasSuffix(ci.Config.Description, want) { // not a keyed partition's
			found = ci
		}
		names = append(names, ci.Config.Description)
	}
	if err := lister.Err(); err != nil {
		t.Fatalf("list consumers: %v", err)
	}
	if found != nil {
		return found
	}
	sort.Strings(names)
	t.Fatalf("no consumer for %s among %q", want, names)
	return nil
}

// handleAll publishes events 0 to n-1 on b, waits until c has seen each
// succeed (what names them in a failure) and until the consumer of handler
// has settled, and returns how long the events took to succeed and the
// consumer's info then (NATS).
func (be *backend) handleAll(t testing.TB, b *bus.Bus, c *tally, handler string, n int, what string) (time.Duration, *jetstream.ConsumerInfo) {
	t.Helper()
	begin := time.Now()
	publishRange(t, b, 0, n)
	c.waitDistinct(t, n, wait, what)
	took := time.Since(begin)
	be.settled(t, handler)
	return took, be.consumer(t, handler, eventName)
}

// settled waits until the handler's consumer has nothing pending and
// nothing unacknowledged (NATS); on memory it returns at once.
func (be *backend) settled(t testing.TB, handler string) {
	t.Helper()
	if !be.isNATS() {
		return
	}
	var ci *jetstream.ConsumerInfo
	bustest.Eventually(t, wait, func() bool {
		ci = be.consumer(t, handler, eventName)
		return ci.NumAckPending == 0 && ci.NumPending == 0
	}, "consumer of %q settled (ack pending %d, pending %d)", handler, ackPending(ci), pending(ci))
}

func ackPending(ci *jetstream.ConsumerInfo) int {
	if ci == nil {
		return -1
	}
	return ci.NumAckPending
}

func pending(ci *jetstream.ConsumerInfo) uint64 {
	if ci == nil {
		return 0
	}
	return ci.NumPending
}

// rawPublish publishes a message on the event's topic past the bus, as a
// foreign or broken publisher would: with nats.go on the transport's subject,
// or with the memory transport's watermill publisher.
func (be *backend) rawPublish(t testing.TB, topic string, payload []byte, headers map[string]string) error {
	t.Helper()
	ctx := ctxFor(t, 10*time.Second)
	if !be.isNATS() {
		msg := newWatermillMessage(payload, headers)
		msg.SetContext(ctx)
		return be.mem.Publisher().Publish(topic, msg)
	}
	m := &natsgo.Msg{Subject: be.subject(topic), Data: payload, Header: natsgo.Header{}}
	for k, v := range headers {
		m.Header.Set(k, v)
	}
	_, err := be.js(t).PublishMsg(ctx, m)
	return err
}

// poisonList returns the poison records of handler ("" for all).
func poisonList(t testing.TB, b *bus.Bus, handler string) []transport.PoisonRecord {
	t.Helper()
	recs, err := b.Poison().List(ctxFor(t, 10*time.Second), handler)
	if err != nil {
		t.Fatalf("poison list: %v", err)
	}
	return recs
}

// waitPoison waits until handler has n poison records and returns them.
func waitPoison(t testing.TB, b *bus.Bus, handler string, n int) []transport.PoisonRecord {
	t.Helper()
	return testkit.WaitPoison(t, b, handler, n, wait)
}

// subscribeTallies subscribes n handlers, named prefix0 to prefix<n-1>, each
// counting into a tally of its own; mark, if not nil, is called with the
// handler's index on each call.
func subscribeTallies(t testing.TB, b *bus.Bus, prefix string, n int, mark func(i int), opts ...bus.SubscribeOption) []*tally {
	t.Helper()
	tallies := make([]*tally, n)
	for i := range tallies {
		var fn func(context.Context, Event, int) error
		if mark != nil {
			fn = func(context.Context, Event, int) error { mark(i); return nil }
		}
		tallies[i] = subscribeTally(t, b, fmt.Sprintf("%s%d", prefix, i), fn, opts...)
	}
	return tallies
}

// subscribeTally subscribes a handler named name that counts into a new
// tally (fail as for tally.handler).
func subscribeTally(t testing.TB, b *bus.Bus, name string, fail func(ctx context.Context, e Event, call int) error, opts ...bus.SubscribeOption) *tally {
	t.Helper()
	c := newTally()
	if _, err := bus.Subscribe(b, name, c.handler(fail), opts...); err != nil {
		t.Fatal(err)
	}
	return c
}

// withMessageIDs gives event seq the message ID prefix-seq, for publishRange.
func withMessageIDs(prefix string) func(seq int) []bus.PublishOption {
	return func(seq int) []bus.PublishOption {
		return []bus.PublishOption{bus.WithMessageID(fmt.Sprintf("%s-%05d", prefix, seq))}
	}
}

// eachRetention runs fn as a subtest for limits and for interest retention.
func eachRetention(t *testing.T, fn func(t *testing.T, retention hnats.Retention)) {
	t.Run("limits", func(t *testing.T) { fn(t, hnats.RetentionLimits) })
	t.Run("interest", func(t *testing.T) { fn(t, hnats.RetentionInterest) })
}

// publishRange publishes Event{Seq: from..from+n-1} with bus.Publish, in order.
func publishRange(t testing.TB, b *bus.Bus, from, n int, opts ...func(seq int) []bus.PublishOption) {
	t.Helper()
	ctx := ctxFor(t, wait)
	for i := from; i < from+n; i++ {
		var po []bus.PublishOption
		for _, o := range opts {
			po = append(po, o(i)...)
		}
		if err := bus.Publish(ctx, b, Event{Seq: i}, po...); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
}

// publishBatch publishes Event{Seq: from..from+n-1} in batches of 500.
func publishBatch(t testing.TB, b *bus.Bus, from, n int) {
	t.Helper()
	ctx := ctxFor(t, wait)
	for lo := from; lo < from+n; lo += 500 {
		hi := min(lo+500, from+n)
		evs := make([]Event, 0, hi-lo)
		for i := lo; i < hi; i++ {
			evs = append(evs, Event{Seq: i})
		}
		if err := bus.PublishBatch(ctx, b, evs); err != nil {
			t.Fatalf("publish %d..%d: %v", lo, hi-1, err)
		}
	}
}

// newWatermillMessage returns a message with a new UUID, payload and headers
// as metadata.
func newWatermillMessage(payload []byte, headers map[string]string) *message.Message {
	msg := message.NewMessage(event.NewID(), payload)
	for k, v := range headers {
		msg.Metadata.Set(k, v)
	}
	return msg
}

// notHandled returns the seqs in [from, to) that never succeeded.
func (c *tally) notHandled(from, to int) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for seq := from; seq < to; seq++ {
		if c.ok[seq] == 0 {
			out = append(out, seq)
		}
	}
	return out
}

// count adds the successes of tallies (distinct and duplicate) to f.
func (f *figures) count(tallies ...*tally) {
	for _, c := range tallies {
		f.delivered += c.distinct()
		f.dups += c.duplicates()
	}
}

// oneHandler returns the figures of fault on transport for one handler
// counting into c, sent events published and the poison records of b.
func oneHandler(t testing.TB, fault, transport string, c *tally, sent int, b *bus.Bus) figures {
	t.Helper()
	f := figures{fault: fault, transport: transport, handlers: 1, sent: sent, poisoned: len(poisonList(t, b, ""))}
	f.count(c)
	return f
}

// waitEvery waits until every tally has every event of [0, n) and checks it.
func waitEvery(t testing.TB, tallies []*tally, n int, timeout time.Duration) {
	t.Helper()
	for i, c := range tallies {
		c.waitDistinct(t, n, timeout, fmt.Sprintf("handler %d has every event", i))
		c.check(t, n, fmt.Sprintf("handler %d", i))
	}
}

// work is a handler's work: it takes d, or ends with ctx.
func work(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Fault 3, crash before ack, with crashEvents events and one handler named
// crashHandler.
const (
	crashEvents  = 100
	crashHandler = "crash.h"
)

// crashBeforeAck runs fault 3: dying (not started) subscribes crashHandler,
// whose crashEvents workers each hold the event they got until the process
// dies; once they all hold one, beforeCrash (if not nil) runs, then crash
// kills the process. A new process (newBus) with the same handler must then
// get every event; afterRecovery (if not nil) runs once it has. The figures
// (but the transport and further extras, which more adds) are logged, and poison records
// fail t. dying is closed when t ends, within a 2-second deadline.
func crashBeforeAck(t *testing.T, dying *bus.Bus, newBus func() *bus.Bus, beforeCrash, crash, afterRecovery func(), more func(f *figures)) {
	t.Helper()
	const n, name = crashEvents, crashHandler
	entered := startStuck(t, dying, name, n, 5*time.Second, nil)

	publishBatch(t, newBus(), 0, n)
	bustest.Eventually(t, wait, func() bool { return entered.Load() == n }, "all %d events in the handler (have %d)", n, entered.Load())
	if beforeCrash != nil {
		beforeCrash()
	}

	crashed := time.Now()
	crash()
	c := newTally()
	restarted := newBus()
	if _, err := bus.Subscribe(restarted, name, c.handler(nil)); err != nil {
		t.Fatal(err)
	}
	c.waitDistinct(t, n, wait, "the new process got every unacknowledged event")
	recovered := time.Since(crashed)
	if afterRecovery != nil {
		afterRecovery()
	}
	c.check(t, n, name)
	f := oneHandler(t, "3-crash-before-ack", "", c, n, restarted)
	f.recover = recovered
	f.add("unacked_at_crash", entered.Load())
	more(&f)
	f.log(t)
	if f.poisoned != 0 {
		t.Errorf("%d poison records after a crash", f.poisoned)
	}
}

// startStuck subscribes handler name on dying (not started) with n workers
// that each hold the event they get until the process dies (its ctx ends),
// and starts dying. The count returned is of the events that entered the
// handler. When t ends dying is closed with a 2-second deadline (its
// connection is gone: errors are expected), then afterClose runs if not
// nil; both must take at most limit.
func startStuck(t *testing.T, dying *bus.Bus, name string, n int, limit time.Duration, afterClose func()) *atomic.Int32 {
	t.Helper()
	var entered atomic.Int32
	if _, err := bus.Subscribe(dying, name, func(ctx context.Context, e Event) error {
		entered.Add(1)
		<-ctx.Done() // stuck until the process "dies"
		return ctx.Err()
	}, bus.WithConcurrency(n)); err != nil {
		t.Fatal(err)
	}
	if err := dying.Start(ctxFor(t, wait)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		begin := time.Now()
		_ = dying.Close(ctx)
		if afterClose != nil {
			afterClose()
		}
		if d := time.Since(begin); d > limit {
			t.Errorf("Close of the crashed bus took %v (a 2s deadline, at most %v in all)", d, limit)
		}
	})
	return &entered
}

// Fault 1, restart, with restartEvents events to restartHandlers handlers.
const restartEvents, restartHandlers = 10000, 3

// restartDuring runs fault 1 on b: restartHandlers handlers (restart.h0,
// ...; 2 workers each) and restartEvents events, the second half published
// while restart runs (a publish that fails is published again, as an
// application would). Once every handler has every event, more adds to the
// figures (its transport, extras); they are logged, and poison records or no
// handler success after the restart fail t. what names the restarted thing.
func restartDuring(t *testing.T, b *bus.Bus, fault, what string, restart func(), more func(f *figures)) {
	t.Helper()
	const n, nh = restartEvents, restartHandlers
	fa := newFirstAfter(nh)
	tallies := subscribeTallies(t, b, "restart.h", nh, fa.mark, bus.WithConcurrency(2))
	pub := newPublisher(b, "restart")
	until := time.Now().Add(2 * time.Minute)
	if failed := pub.run(0, n/2, until); len(failed) > 0 {
		t.Fatalf("before the restart, gave up publishing %d events: %v", len(failed), failed[:min(10, len(failed))])
	}
	errsBefore := pub.errs.Load()

	second := make(chan []int, 1)
	go func() { second <- pub.run(n/2, n, until) }()
	down := time.Now()
	restart()
	up := time.Now()
	fa.since.Store(up.UnixNano())
	if failed := <-second; len(failed) > 0 {
		t.Fatalf("after the restart, gave up publishing %d events: %v (errors: %s)", len(failed), failed[:min(10, len(failed))], pub.errorSummary())
	}
	published := time.Now()

	waitEvery(t, tallies, n, 3*wait)
	all := time.Now()
	f := figures{fault: fault, handlers: nh, sent: len(pub.published())}
	f.add("publish_errors", pub.errs.Load())
	f.add("outage", up.Sub(down))
	more(&f)
	f.count(tallies...)
	f.poisoned = len(poisonList(t, b, ""))
	f.recover = fa.latest(down)
	f.add("all_delivered_after_restart", all.Sub(down))
	f.add("last_publish_after_restart", published.Sub(down))
	f.log(t)
	t.Logf("publish errors before the restart: %d; during and after: %d: %s", errsBefore, pub.errs.Load()-errsBefore, pub.errorSummary())
	if f.poisoned != 0 {
		t.Errorf("%d poison records after a %s restart, want 0: %+v", f.poisoned, what, poisonList(t, b, "")[0])
	}
	if f.recover < 0 {
		t.Errorf("no handler succeeded after the restart")
	}
}
