package benchmarks

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/transport"
)

// The drivers shared by the benchmarks: each resets the clock, publishes
// b.N events, waits until c has counted every delivery (a counter with a
// target of 0 is done at once), stops the clock and reports throughput over
// handlers handlers (0: events/s only).

// publishFunc publishes e and returns once the broker has stored it.
type publishFunc = func(ctx context.Context, e BenchEvent) error

// publishBatchFunc publishes events and returns once the broker has stored
// every one.
type publishBatchFunc = func(ctx context.Context, events []BenchEvent) error

// runPublishers publishes events 1 to b.N from p goroutines, each publishing
// the next event not yet taken until none is left; it fails b with the first
// error.
func runPublishers(b *testing.B, p int, c *counter, handlers int, publish publishFunc) {
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	b.ReportAllocs()
	b.ResetTimer()
	for range p {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := publish(ctx, newEvent(int(i))); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	finish(b, c, handlers)
}

// runBatches publishes events 0 to b.N-1 from one goroutine in batches of
// size (the last one shorter), each waiting for its batch.
func runBatches(b *testing.B, size int, c *counter, handlers int, publishBatch publishBatchFunc) {
	publishBatches(b, size, publishBatch)
	finish(b, c, handlers)
}

// publishBatches resets the clock and publishes events 0 to b.N-1 from one
// goroutine in batches of size (the last one shorter), each waiting for its
// batch.
func publishBatches(b *testing.B, size int, publishBatch publishBatchFunc) {
	ctx := context.Background()
	batch := make([]BenchEvent, 0, size)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		batch = append(batch, newEvent(i))
		if len(batch) == size || i == b.N-1 {
			if err := publishBatch(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// runEndToEnd is the end-to-end run: batches of e2eBatch to handlers
// handlers, each counting on c.
func runEndToEnd(b *testing.B, c *counter, handlers int, publishBatch publishBatchFunc) {
	runBatches(b, e2eBatch, c, handlers, publishBatch)
}

// runSequential publishes events 0 to b.N-1 one after the other from one
// goroutine with publish (which fails b itself).
func runSequential(b *testing.B, c *counter, handlers int, publish func(i int)) {
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		publish(i)
	}
	finish(b, c, handlers)
}

// finish waits until c has counted every delivery, stops the clock and
// reports throughput over handlers handlers.
func finish(b *testing.B, c *counter, handlers int) {
	c.wait(b, 5*time.Minute)
	b.StopTimer()
	reportThroughput(b, b.N, handlers)
}

// firstError keeps the first error it is given, from any goroutine.
type firstError struct{ p atomic.Pointer[error] }

func (f *firstError) set(err error) { f.p.CompareAndSwap(nil, &err) }

func (f *firstError) get() error {
	if err := f.p.Load(); err != nil {
		return *err
	}
	return nil
}

// handleJSON decodes payload into an event (failing b on an error) and
// calls fn with it.
func handleJSON(b *testing.B, payload []byte, fn func(BenchEvent)) {
	var e BenchEvent
	if err := json.Unmarshal(payload, &e); err != nil {
		b.Error(err)
	}
	fn(e)
}

// subscribeWatermill starts n watermill subscribers on topic (newSub(i)
// makes the i-th), each handling every message it gets with fn (decoded),
// then acking it. When b ends it cancels their subscriptions, closes them,
// waits for their handling to end, and closes pub.
func subscribeWatermill(b *testing.B, pub message.Publisher, topic string, n int,
	newSub func(i int) (message.Subscriber, error), fn func(BenchEvent)) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var subs []message.Subscriber
	b.Cleanup(func() {
		cancel()
		for _, s := range subs {
			if err := s.Close(); err != nil {
				b.Error(err)
			}
		}
		wg.Wait()
		_ = pub.Close()
	})
	for i := range n {
		sub, err := newSub(i)
		if err != nil {
			b.Fatal(err)
		}
		subs = append(subs, sub)
		msgs, err := sub.Subscribe(ctx, topic)
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			for m := range msgs {
				handleJSON(b, m.Payload, fn)
				m.Ack()
			}
		})
	}
}

// watermillPublish returns the publish functions of a watermill publisher
// sending JSON events to topic: watermill publishes a batch by waiting for
// each message in turn.
func watermillPublish(pub message.Publisher, topic string) (publishFunc, publishBatchFunc) {
	toMsg := func(e BenchEvent) (*message.Message, error) {
		payload, err := json.Marshal(e)
		if err != nil {
			return nil, err
		}
		return message.NewMessage(watermill.NewUUID(), payload), nil
	}
	publish := func(_ context.Context, e BenchEvent) error {
		m, err := toMsg(e)
		if err != nil {
			return err
		}
		return pub.Publish(topic, m)
	}
	publishBatch := func(_ context.Context, es []BenchEvent) error {
		msgs := make([]*message.Message, len(es))
		for i, e := range es {
			m, err := toMsg(e)
			if err != nil {
				return err
			}
			msgs[i] = m
		}
		return pub.Publish(topic, msgs...)
	}
	return publish, publishBatch
}

// impl is an implementation under benchmark: its name, and how it starts
// against a broker (inspected by an admin A) to give its rig R.
type impl[A, R any] struct {
	name  string
	start func(b *testing.B, a A, url string, handlers int, fn func(BenchEvent)) R
}

// heraldPublish returns hb's Publish and PublishBatch of benchmark events.
func heraldPublish(hb *bus.Bus) (publishFunc, publishBatchFunc) {
	return func(ctx context.Context, e BenchEvent) error { return bus.Publish(ctx, hb, e) },
		func(ctx context.Context, es []BenchEvent) error { return bus.PublishBatch(ctx, hb, es) }
}

// busMode is one side of a comparison of Herald runs that differ only in
// bus options: its name, and the options (made for the run b).
type busMode struct {
	name string
	opts func(b *testing.B) []bus.Option
}

// benchModesMemory runs, for each mode, a sub-benchmark "<key>=<mode>" that
// hands run a memory bus (default chain, the mode's options, closed when b
// ends) with one handler counting on c, which waits for b.N events.
func benchModesMemory(b *testing.B, key string, modes []busMode, run func(b *testing.B, hb *bus.Bus, c *counter)) {
	for _, mode := range modes {
		b.Run(key+"="+mode.name, func(b *testing.B) {
			hb, err := bus.New(mode.opts(b)...)
			if err != nil {
				b.Fatal(err)
			}
			closeLater(b, hb)
			c := newCounter(b.N)
			subscribeAndStart(b, hb, 1, func(BenchEvent) { c.hit() })
			run(b, hb, c)
		})
	}
}

// benchModesNATS runs, for each NATS server and mode, a sub-benchmark
// "server=<server>/<key>=<mode>" that hands run Herald's NATS rig
// (startHeraldNATSWith, the mode's options) with one handler counting on c,
// which waits for b.N events.
func benchModesNATS(b *testing.B, key string, modes []busMode, run func(b *testing.B, a *admin, rig *natsRig, c *counter)) {
	for _, srv := range natsServers(b) {
		for _, mode := range modes {
			b.Run(fmt.Sprintf("server=%s/%s=%s", srv.name, key, mode.name), func(b *testing.B) {
				a := newAdmin(b, srv.url)
				c := newCounter(b.N)
				rig := startHeraldNATSWith(b, a, srv.url, 1, func(BenchEvent) { c.hit() }, mode.opts(b)...)
				run(b, a, rig, c)
			})
		}
	}
}

// heraldBus returns a bus owning tr, built with opts, and closed when b ends
// (see closeLater). It closes tr and fails b if the bus cannot be built.
func heraldBus(b *testing.B, tr transport.Transport, opts ...bus.Option) *bus.Bus {
	hb, err := bus.New(append([]bus.Option{bus.WithTransport(tr)}, opts...)...)
	if err != nil {
		_ = tr.Close()
		b.Fatal(err)
	}
	closeLater(b, hb)
	return hb
}

// closeLater closes hb when b ends, within 30 seconds, failing b on an
// error.
func closeLater(b *testing.B, hb *bus.Bus) {
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := hb.Close(ctx); err != nil {
			b.Error(err)
		}
	})
}
