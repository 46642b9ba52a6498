package nats_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/middleware"
	"github.com/heraldbus/herald/transport"
)

const orderTopic = "herald_test.OrderPlaced"

// consumersOf returns the consumers the transport made for handler, by their
// filter subject without the prefix (the topic, or "_keyed.<p>.<topic>").
func (in *inspector) consumersOf(handler string) map[string]*jetstream.ConsumerInfo {
	in.t.Helper()
	ctx := testCtx(in.t)
	s, err := in.js.Stream(ctx, in.stream)
	if err != nil {
		in.t.Fatal(err)
	}
	out := map[string]*jetstream.ConsumerInfo{}
	l := s.ListConsumers(ctx)
	for ci := range l.Info() {
		var h, topic string
		if _, err := fmt.Sscanf(ci.Config.Description, "Herald handler %q, topic %q", &h, &topic); err == nil && h == handler {
			_, sub, _ := strings.Cut(ci.Config.FilterSubject, ".")
			out[sub] = ci
		}
	}
	if err := l.Err(); err != nil {
		in.t.Fatal(err)
	}
	return out
}

// keyedRecorder records the steps of each key a handler is called with.
type keyedRecorder struct {
	order bustest.KeyOrder
	mu    sync.Mutex
	got   map[string][]int
	fail  func(key string, seq int) error
}

func (r *keyedRecorder) handle(ctx context.Context, e OrderPlaced) error {
	m, _ := handlers.FromContext(ctx)
	r.order.Step(m.OrderingKey, e.Seq)
	if r.fail != nil {
		if err := r.fail(m.OrderingKey, e.Seq); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got == nil {
		r.got = map[string][]int{}
	}
	r.got[m.OrderingKey] = append(r.got[m.OrderingKey], e.Seq)
	return nil
}

func (r *keyedRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.got {
		n += len(s)
	}
	return n
}

func (r *keyedRecorder) wait(t *testing.T, n int) {
	t.Helper()
	bustest.Eventually(t, wait, func() bool { return r.count() >= n }, "%d events handled (have %d)", n, r.count())
	if c := r.count(); c != n {
		t.Errorf("%d events handled, want %d", c, n)
	}
	if o := r.order.OutOfOrder(); o != 0 {
		t.Errorf("%d steps out of order: %v", o, r.got)
	}
}

// publishKeyed publishes per events of each key, seq 0 to per-1.
func publishKeyed(t *testing.T, b *bus.Bus, keys []string, per int) {
	t.Helper()
	for i := range per {
		for _, k := range keys {
			if err := bus.Publish(testCtx(t), b, OrderPlaced{ID: fmt.Sprint(k, "-", i), Seq: i}, bus.WithOrderingKey(k)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// A keyed event goes on its key's partition subject, which a publisher in
// another language can compute; every handler gets it, ordering by key or
// not; a handler ordering by key has a consumer per partition with
// MaxAckPending 1, another one a consumer for all partitions; Handlers shows
// the topic once and DeleteHandler deletes every consumer.
func TestKeyedPartitionSubjects(t *testing.T) {
	eachBroker(t, func(t *testing.T, br broker) {
		const parts = 4
		tr := br.transport(t, func(c *nats.Config) { c.Partitions, c.Retention = parts, nats.RetentionLimits }) // limits: the events stay to be looked at
		b := bustest.New(t, bus.WithTransport(tr))
		ordered := &keyedRecorder{}
		osub, err := bus.Subscribe(b, "ordered", ordered.handle, bus.WithOrderingByKey(), bus.WithConcurrency(2))
		if err != nil {
			t.Fatal(err)
		}
		plain := bustest.Record[OrderPlaced](t, b, "plain")

		in := inspect(t, br)
		oc := in.consumersOf("ordered")
		if len(oc) != parts+2 {
			t.Fatalf("handler ordering by key has %d consumers, want %d (topic, %d partitions, replays): %v", len(oc), parts+2, parts, keys(oc))
		}
		for p := range parts {
			ci := oc[fmt.Sprintf("_keyed.%d.%s", p, orderTopic)]
			if ci == nil || ci.Config.MaxAckPending != 1 || ci.Config.FilterSubject != tr.Subject(fmt.Sprintf("_keyed.%d.%s", p, orderTopic)) {
				t.Fatalf("partition %d consumer: %+v", p, ci)
			}
		}
		if pc := in.consumersOf("plain"); len(pc) != 3 || pc["_keyed.*."+orderTopic] == nil {
			t.Fatalf("plain handler consumers %v, want its topic, all its partitions, replays", keys(pc))
		}

		ctx := testCtx(t)
		if err := bus.Publish(ctx, b, OrderPlaced{ID: "a", Seq: 0}, bus.WithOrderingKey("k-1"), bus.WithMessageID("id-a")); err != nil {
			t.Fatal(err)
		}
		stream, err := tr.JetStream().Stream(ctx, tr.Config().StreamName)
		if err != nil {
			t.Fatal(err)
		}
		subject := fmt.Sprintf("%s._keyed.%d.%s", tr.Config().SubjectPrefix, transport.KeyPartition("k-1", parts), orderTopic)
		if m, err := stream.GetLastMsgForSubject(ctx, subject); err != nil || m.Header.Get(transport.KeyOrderingKey) != "k-1" {
			t.Fatalf("no keyed event on %s: %v", subject, err)
		}
		// The same ID again: the stream drops it, as on any subject.
		if err := bus.Publish(ctx, b, OrderPlaced{ID: "a", Seq: 0}, bus.WithOrderingKey("k-1"), bus.WithMessageID("id-a")); err != nil {
			t.Fatal(err)
		}

		// A foreign publisher: Herald headers on the computed subject.
		nc := connect(t, br.url)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		fm := natsgo.NewMsg(fmt.Sprintf("%s._keyed.%d.%s", tr.Config().SubjectPrefix, transport.KeyPartition("k-2", parts), orderTopic))
		fm.Header.Set(transport.KeyID, "foreign-1")
		fm.Header.Set(transport.KeyEvent, orderTopic)
		fm.Header.Set(transport.KeyOrderingKey, "k-2")
		fm.Data = []byte(`{"id":"f","seq":0}`)
		if _, err := js.PublishMsg(ctx, fm); err != nil {
			t.Fatal(err)
		}
		// And an event without a key.
		if err := bus.Publish(ctx, b, OrderPlaced{ID: "u", Seq: 0}); err != nil {
			t.Fatal(err)
		}
		ordered.wait(t, 3)
		if got := plain.Wait(t, 3, wait); len(got) != 3 {
			t.Fatalf("plain handler got %v", got)
		}

		hs, err := b.Handlers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hs {
			if want := []string{transport.ReplayTopic(h.Name), orderTopic}; strings.Join(h.Topics, ",") != strings.Join(want, ",") {
				t.Errorf("handler %s topics %v, want %v", h.Name, h.Topics, want)
			}
		}
		if err := osub.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if err := b.DeleteHandler(ctx, "ordered"); err != nil {
			t.Fatal(err)
		}
		if oc := in.consumersOf("ordered"); len(oc) != 0 {
			t.Errorf("consumers left after DeleteHandler: %v", keys(oc))
		}
	})
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Keyed events published while a handler ordering by key is down wait in
// its partitions (Stats counts them), and reach it in order when it comes
// back; a new handler starting from history gets them in order too.
func TestKeyedBacklogAndHistory(t *testing.T) {
	eachBroker(t, func(t *testing.T, br broker) {
		b := newBus(t, br)
		first := &keyedRecorder{}
		sub, err := bus.Subscribe(b, "ordered", first.handle, bus.WithOrderingByKey())
		if err != nil {
			t.Fatal(err)
		}
		ctx := testCtx(t)
		if err := sub.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		ks := []string{"a", "b", "c", "d", "e"}
		publishKeyed(t, b, ks, 10)
		if err := bus.Publish(ctx, b, OrderPlaced{ID: "plain"}); err != nil {
			t.Fatal(err)
		}
		late := &keyedRecorder{}
		if _, err := bus.Subscribe(b, "late", late.handle, bus.WithOrderingByKey(), bus.WithConcurrency(3),
			bus.WithStartFrom(time.Time{})); err != nil {
			t.Fatal(err)
		}
		late.wait(t, 51)

		tr2 := br.transport(t)
		b2 := bustest.New(t, bus.WithTransport(tr2))
		back := &keyedRecorder{}
		// Summed over the topic's consumer and the partitions'.
		bl, err := tr2.Backlog(ctx, "ordered", orderTopic)
		if err != nil || bl != 51 {
			t.Fatalf("backlog of the stopped handler = %d, %v; want 51", bl, err)
		}
		if _, err := bus.Subscribe(b2, "ordered", back.handle, bus.WithOrderingByKey(), bus.WithConcurrency(2)); err != nil {
			t.Fatal(err)
		}
		back.wait(t, 51)
		bustest.Eventually(t, wait, func() bool {
			st, err := b2.Stats(ctx)
			for _, s := range st {
				if s.Handler == "ordered" {
					return err == nil && s.Backlog == 0
				}
			}
			return false
		}, "backlog 0 once handled")
	})
}

// A poisoned keyed event lets its key go on; replayed, it reaches the handler
// again (after the key's later events: its place was given up when it was
// poisoned).
func TestKeyedPoisonReleasesPartition(t *testing.T) {
	eachBroker(t, func(t *testing.T, br broker) {
		b := newBus(t, br, func(c *nats.Config) { c.Partitions = 2 })
		poison := true
		var mu sync.Mutex
		r := &keyedRecorder{fail: func(key string, seq int) error {
			mu.Lock()
			defer mu.Unlock()
			if key == "a" && seq == 3 && poison {
				return bus.Permanent(errors.New("bad order"))
			}
			return nil
		}}
		if _, err := bus.Subscribe(b, "ordered", r.handle, bus.WithOrderingByKey()); err != nil {
			t.Fatal(err)
		}
		publishKeyed(t, b, []string{"a", "b"}, 10)
		r.wait(t, 19)
		ctx := testCtx(t)
		recs, err := b.Poison().List(ctx, "ordered")
		if err != nil || len(recs) != 1 {
			t.Fatalf("poison records %v, %v", recs, err)
		}
		mu.Lock()
		poison = false
		mu.Unlock()
		if err := b.Poison().Replay(ctx, recs[0].ID); err != nil {
			t.Fatal(err)
		}
		bustest.Eventually(t, wait, func() bool { return r.count() == 20 }, "replayed event handled")
		r.mu.Lock()
		defer r.mu.Unlock()
		if a := r.got["a"]; a[len(a)-1] != 3 {
			t.Errorf("key a handled %v, want the replayed 3 last", a)
		}
	})
}

// With partitions off, a keyed event stays on its topic's subject and a
// handler ordering by key has no partition consumers.
func TestKeyedPartitionsOff(t *testing.T) {
	eachBroker(t, func(t *testing.T, br broker) {
		tr := br.transport(t, func(c *nats.Config) { c.Partitions, c.Retention = -1, nats.RetentionLimits })
		b := bustest.New(t, bus.WithTransport(tr))
		r := &keyedRecorder{}
		if _, err := bus.Subscribe(b, "ordered", r.handle, bus.WithOrderingByKey(), bus.WithConcurrency(2)); err != nil {
			t.Fatal(err)
		}
		if oc := inspect(t, br).consumersOf("ordered"); len(oc) != 2 {
			t.Fatalf("consumers %v, want the topic's and replays", keys(oc))
		}
		ctx := testCtx(t)
		if err := bus.Publish(ctx, b, OrderPlaced{ID: "a"}, bus.WithOrderingKey("k")); err != nil {
			t.Fatal(err)
		}
		stream, err := tr.JetStream().Stream(ctx, tr.Config().StreamName)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.GetLastMsgForSubject(ctx, tr.Subject(orderTopic)); err != nil {
			t.Fatalf("keyed event not on %s: %v", tr.Subject(orderTopic), err)
		}
		r.wait(t, 1)
	})
}

// A handler that stops ordering by key (or starts) finds the consumers of
// its other way, which the stream keeps keyed events for: it says so.
func TestKeyedModeSwitchWarns(t *testing.T) {
	eachBroker(t, func(t *testing.T, br broker) {
		b := newBus(t, br)
		sub, err := bus.Subscribe(b, "switch", func(context.Context, OrderPlaced) error { return nil }, bus.WithOrderingByKey())
		if err != nil {
			t.Fatal(err)
		}
		ctx := testCtx(t)
		if err := sub.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		log, warns := warnings()
		b2 := bustest.New(t, bus.WithTransport(br.transport(t, func(c *nats.Config) { c.Logger = log })))
		if _, err := bus.Subscribe(b2, "switch", func(context.Context, OrderPlaced) error { return nil }, bus.WithConcurrency(3)); err != nil {
			t.Fatal(err)
		}
		if n := warns.FilterMessageSnippet("consumers of keyed events from when it was ordering by key").Len(); n != 1 {
			t.Errorf("%d warnings of the other mode's consumers, want 1: %v", n, warns.All())
		}
		// Not the other way round on a handler that never ordered by key.
		if _, err := bus.Subscribe(b2, "fresh", func(context.Context, OrderPlaced) error { return nil }, bus.WithOrderingByKey()); err != nil {
			t.Fatal(err)
		}
		if n := warns.FilterMessageSnippet("from when it was not ordering by key").Len(); n != 0 {
			t.Errorf("%d warnings for a new handler", n)
		}
	})
}

// A partition's consumer deleted under a running handler ordering by key is
// created again from where the partition was: nothing lost, keys in order.
func TestKeyedPartitionConsumerDeleted(t *testing.T) {
	eachBroker(t, func(t *testing.T, br broker) {
		log, warns := warnings()
		tr := br.transport(t, func(c *nats.Config) { c.Partitions, c.Retention, c.Logger = 2, nats.RetentionLimits, log })
		b := bustest.New(t, bus.WithTransport(tr))
		r := &keyedRecorder{}
		if _, err := bus.Subscribe(b, "ordered", r.handle, bus.WithOrderingByKey(), bus.WithConcurrency(2)); err != nil {
			t.Fatal(err)
		}
		ks := []string{"a", "b", "c", "d"}
		publishKeyed(t, b, ks, 5)
		r.wait(t, 20)
		in := inspect(t, br)
		victim := in.consumersOf("ordered")["_keyed.1."+orderTopic]
		if victim == nil {
			t.Fatal("no consumer of partition 1")
		}
		if err := in.js.DeleteConsumer(testCtx(t), in.stream, victim.Name); err != nil {
			t.Fatal(err)
		}
		for i := 5; i < 10; i++ {
			for _, k := range ks {
				if err := bus.Publish(testCtx(t), b, OrderPlaced{ID: fmt.Sprint(k, "-", i), Seq: i}, bus.WithOrderingKey(k)); err != nil {
					t.Fatal(err)
				}
			}
		}
		bustest.Eventually(t, recoverWait, func() bool { return r.count() >= 40 }, "every event handled (%d of 40)", r.count())
		r.wait(t, 40)
		if n := warns.FilterMessageSnippet("created again").FilterField(zap.String("consumer", victim.Name)).Len(); n != 1 {
			t.Errorf("%d warnings of the partition consumer created again, want 1", n)
		}
		if ci := in.consumersOf("ordered")["_keyed.1."+orderTopic]; ci == nil || ci.Config.MaxAckPending != 1 {
			t.Errorf("partition 1 consumer after: %+v", ci)
		}
	})
}

// A keyed event retried in process for longer than AckWait stays with its
// worker: progress acks keep the server from handing it (or the key's next
// event) to another replica meanwhile.
func TestKeyedRetryBeyondAckWait(t *testing.T) {
	eachBroker(t, func(t *testing.T, br broker) {
		var running, overlap atomic.Int32
		var calls atomic.Int32
		var replicas []*bus.Bus
		r := &keyedRecorder{fail: func(key string, seq int) error {
			if seq == 0 && calls.Add(1) < 3 {
				return errors.New("not yet")
			}
			return nil
		}}
		handle := func(ctx context.Context, e OrderPlaced) error {
			if running.Add(1) > 1 {
				overlap.Add(1)
			}
			defer running.Add(-1)
			return r.handle(ctx, e)
		}
		for range 2 {
			tr := br.transport(t, func(c *nats.Config) { c.Partitions, c.AckWait = 2, 300*time.Millisecond })
			b := bustest.New(t, bus.WithTransport(tr), bus.WithDefaultRetry(middleware.RetryPolicy{
				MaxAttempts: 3, InitialInterval: 400 * time.Millisecond, MaxInterval: 400 * time.Millisecond}))
			if _, err := bus.Subscribe(b, "ordered", handle, bus.WithOrderingByKey()); err != nil {
				t.Fatal(err)
			}
			replicas = append(replicas, b)
		}
		publishKeyed(t, replicas[0], []string{"k"}, 2)
		r.wait(t, 2)
		if calls.Load() != 3 || overlap.Load() != 0 {
			t.Errorf("%d calls of the retried event (want 3), %d overlapping", calls.Load(), overlap.Load())
		}
		part := fmt.Sprintf("_keyed.%d.%s", transport.KeyPartition("k", 2), orderTopic)
		if ci := inspect(t, br).consumersOf("ordered")[part]; ci == nil || ci.Delivered.Consumer != 2 || ci.NumRedelivered != 0 {
			t.Errorf("partition consumer after: %+v, want 2 deliveries and no redelivery", ci)
		}
	})
}
