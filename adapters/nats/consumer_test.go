package nats_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
)

// inspector is a connection of the test's own, to do what an operator or
// another tool would: look at, delete and create streams and consumers.
type inspector struct {
	t      *testing.T
	js     jetstream.JetStream
	stream string
}

func inspect(t *testing.T, b broker) *inspector {
	t.Helper()
	js, err := jetstream.New(connect(t, b.url))
	if err != nil {
		t.Fatal(err)
	}
	stream := b.stream
	if stream == "" {
		stream = nats.DefaultStreamName
	}
	return &inspector{t: t, js: js, stream: stream}
}

// consumer returns the info of the consumer of handler on topic (the
// transport names it; its description names the handler and the topic).
func (in *inspector) consumer(handler, topic string) *jetstream.ConsumerInfo {
	in.t.Helper()
	ctx := testCtx(in.t)
	s, err := in.js.Stream(ctx, in.stream)
	if err != nil {
		in.t.Fatal(err)
	}
	want := fmt.Sprintf("handler %q, topic %q", handler, topic)
	var found *jetstream.ConsumerInfo
	l := s.ListConsumers(ctx)
	for ci := range l.Info() {
		if strings.HasSuffix(ci.Config.Description, want) { // not a keyed partition's
			found = ci
		}
	}
	if err := l.Err(); err != nil {
		in.t.Fatal(err)
	}
	if found == nil {
		in.t.Fatalf("no consumer for %s", want)
	}
	return found
}

// recoverWait bounds the recovery from a missing consumer: nats-server 2.9
// does not answer a pull request for it, so the transport notices only when
// two heartbeats are missed (10 to 15s).
const recoverWait = time.Minute

// warnings returns a logger that keeps its Warn entries, and them.
func warnings() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.WarnLevel)
	return zap.New(core), logs
}

// busyHandler records OrderPlaced events by Seq and blocks on the event
// with Seq == block until release is closed.
type busyHandler struct {
	mu      sync.Mutex
	seen    map[int]int
	block   int
	started chan struct{} // closed when the blocking event starts
	release chan struct{}
	once    sync.Once
}

func newBusyHandler(block int) *busyHandler {
	return &busyHandler{seen: map[int]int{}, block: block, started: make(chan struct{}), release: make(chan struct{})}
}

func (h *busyHandler) handle(ctx context.Context, e OrderPlaced) error {
	if e.Seq == h.block {
		h.once.Do(func() { close(h.started) })
		select {
		case <-h.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	h.mu.Lock()
	h.seen[e.Seq]++
	h.mu.Unlock()
	return nil
}

func (h *busyHandler) distinct() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.seen)
}

func (h *busyHandler) check(t *testing.T, n int) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for seq := range n {
		if h.seen[seq] != 1 {
			t.Errorf("event %d handled %d times, want 1", seq, h.seen[seq])
		}
	}
}

// whileBusy subscribes a busyHandler named name (limits retention, prefetch
// 1) and publishes events 0 to 2; while event 2 is being handled (0 and 1
// handled), fault strikes. Then it publishes events 3 to 12 (after the fault,
// the handler still busy), releases the handler, publishes 13 and 14, and
// waits until every one of the 15 was handled once. It returns the
// inspector and the transport's warnings.
func whileBusy(t *testing.T, b broker, name string, fault func(in *inspector)) (*inspector, *observer.ObservedLogs) {
	t.Helper()
	in := inspect(t, b)
	log, logs := warnings()
	tr := b.transport(t, func(c *nats.Config) { c.Retention = nats.RetentionLimits; c.Prefetch = 1; c.Logger = log })
	bb := bustest.New(t, bus.WithTransport(tr))
	h := newBusyHandler(2)
	if _, err := bus.Subscribe(bb, name, h.handle); err != nil {
		t.Fatal(err)
	}
	publishOrders(t, bb, 0, 3)
	<-h.started // events 0 and 1 handled, 2 being handled
	fault(in)
	publishOrders(t, bb, 3, 10) // after the fault
	close(h.release)
	publishOrders(t, bb, 13, 2) // after
	bustest.Eventually(t, recoverWait, func() bool { return h.distinct() == 15 }, "every event handled (%d)", 15)
	h.check(t, 15)
	return in, logs
}

// A handler's consumer deleted while the handler is busy (an operator, a
// tool) is created again from where the handler was: the events published
// in the gap reach it, once, and so does everything after.
func TestConsumerDeletedWhileBusy(t *testing.T) {
	eachBroker(t, func(t *testing.T, b broker) {
		const name = "deleted.consumer"
		var ci *jetstream.ConsumerInfo
		in, logs := whileBusy(t, b, name, func(in *inspector) {
			ci = in.consumer(name, OrderPlaced{}.EventName())
			if err := in.js.DeleteConsumer(testCtx(t), in.stream, ci.Name); err != nil {
				t.Fatal(err)
			}
		})
		after := in.consumer(name, OrderPlaced{}.EventName())
		// Event 2 (stream sequence 3) was the last acknowledged.
		if after.Config.DeliverPolicy != jetstream.DeliverByStartSequencePolicy || after.Config.OptStartSeq != 4 {
			t.Errorf("consumer created again with deliver policy %v from %d, want by start sequence from 4",
				after.Config.DeliverPolicy, after.Config.OptStartSeq)
		}
		recreated := logs.FilterMessageSnippet("created again").FilterField(zap.String("consumer", ci.Name)).All()
		if len(recreated) != 1 || recreated[0].ContextMap()["start_seq"] != uint64(4) {
			t.Errorf("warnings about the consumer created again: %v", recreated)
		}
	})
}

// The events stream deleted and created again by another process while a
// handler is busy: the handler's consumer is created again with every event
// the new stream holds, not only those published after.
func TestStreamRecreatedWhileBusy(t *testing.T) {
	eachBroker(t, func(t *testing.T, b broker) {
		const name = "recreated.stream"
		// The events published during the fault go into the new stream, at
		// sequences 1 to 10.
		in, logs := whileBusy(t, b, name, func(in *inspector) {
			ctx := testCtx(t)
			s, err := in.js.Stream(ctx, in.stream)
			if err != nil {
				t.Fatal(err)
			}
			cfg := s.CachedInfo().Config
			if err := in.js.DeleteStream(ctx, in.stream); err != nil {
				t.Fatal(err)
			}
			if _, err := in.js.CreateStream(ctx, cfg); err != nil {
				t.Fatal(err)
			}
		})
		after := in.consumer(name, OrderPlaced{}.EventName())
		if after.Config.DeliverPolicy != jetstream.DeliverAllPolicy {
			t.Errorf("consumer created again with deliver policy %v, want all", after.Config.DeliverPolicy)
		}
		if n := logs.FilterMessageSnippet("created again").FilterField(zap.String("consumer", after.Name)).Len(); n != 1 {
			t.Errorf("%d warnings about the consumer created again, want 1", n)
		}
	})
}

// Two processes of one handler with different AckWaits (a rolling config
// change) share its consumer. Each paces its progress acks by the
// consumer's actual AckWait, so an event handled for longer than the shorter
// AckWait is never delivered to the other process meanwhile: every event is
// handled once, never concurrently, and the server delivered each once.
func TestMixedAckWait(t *testing.T) {
	for _, order := range [][2]time.Duration{{time.Second, 30 * time.Second}, {30 * time.Second, time.Second}} {
		t.Run(fmt.Sprintf("%v then %v", order[0], order[1]), func(t *testing.T) {
			eachBroker(t, func(t *testing.T, b broker) {
				const name, n = "mixed.ackwait", 3
				const work = 2500 * time.Millisecond
				in := inspect(t, b)
				var mu sync.Mutex
				running := map[int]bool{}
				calls := map[int]int{}
				var overlaps []int
				handle := func(ctx context.Context, e OrderPlaced) error {
					mu.Lock()
					if running[e.Seq] {
						overlaps = append(overlaps, e.Seq)
					}
					running[e.Seq] = true
					calls[e.Seq]++
					mu.Unlock()
					defer func() {
						mu.Lock()
						running[e.Seq] = false
						mu.Unlock()
					}()
					select {
					case <-time.After(work): // the handler's work
						return nil
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				var buses []*bus.Bus
				var logs []*observer.ObservedLogs
				for _, ackWait := range order {
					log, obs := warnings()
					logs = append(logs, obs)
					bb := newBus(t, b, func(c *nats.Config) { c.AckWait = ackWait; c.Logger = log })
					if _, err := bus.Subscribe(bb, name, handle); err != nil {
						t.Fatal(err)
					}
					buses = append(buses, bb)
				}
				publishOrders(t, buses[0], 0, n)
				bustest.Eventually(t, wait, func() bool {
					mu.Lock()
					defer mu.Unlock()
					done := 0
					for seq, k := range calls {
						if k > 0 && !running[seq] {
							done++
						}
					}
					return done == n
				}, "%d events handled", n)
				var ci *jetstream.ConsumerInfo
				bustest.Eventually(t, wait, func() bool {
					ci = in.consumer(name, OrderPlaced{}.EventName())
					return ci.NumAckPending == 0 && ci.NumPending == 0
				}, "consumer settled")
				t.Logf("consumer AckWait %v; delivered %d times", ci.Config.AckWait, ci.Delivered.Consumer)
				mu.Lock()
				defer mu.Unlock()
				if len(overlaps) > 0 {
					t.Errorf("events handled concurrently: %v", overlaps)
				}
				for seq := range n {
					if calls[seq] != 1 {
						t.Errorf("event %d handled %d times", seq, calls[seq])
					}
				}
				if ci.Delivered.Consumer != n {
					t.Errorf("the server delivered %d times for %d events", ci.Delivered.Consumer, n)
				}
				// The consumer keeps the longer AckWait; the process that
				// found it longer than its own says it paces by it.
				if ci.Config.AckWait != 30*time.Second {
					t.Errorf("consumer AckWait %v, want 30s", ci.Config.AckWait)
				}
				for i, l := range logs {
					want := 0
					if i == 1 && order[1] < order[0] {
						want = 1
					}
					if got := l.FilterMessageSnippet("AckWait").FilterField(zap.String("consumer", ci.Name)).Len(); got != want {
						t.Errorf("process %d (AckWait %v): %d warnings about the AckWait, want %d", i, order[i], got, want)
					}
				}
			})
		})
	}
}
