package benchmarks

import (
	"context"
	"fmt"
	"strings"
	"testing"

	heraldnats "github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/bus"
)

// keyedKeys is how many ordering keys BenchmarkNATSKeyed spreads its events
// over.
const keyedKeys = 256

// BenchmarkNATSKeyed measures ordering by key across replicas: b.N events
// published asynchronously (bus.PublishAsync) from one goroutine with 256
// ordering keys, to one handler with WithOrderingByKey and WithConcurrency(8)
// running on 1 and 3 replicas (buses with their own transport and
// connection), over Config.Partitions 1, 8 and 32. Beside them, "unkeyed":
// the same events without a key to the same handler without ordering by
// key. The clock stops when every event was handled once; ns/op is per
// event. The "consumers" metric is the handler's consumers on the server.
func BenchmarkNATSKeyed(b *testing.B) {
	for _, srv := range natsServers(b) {
		for _, replicas := range []int{1, 3} {
			for _, parts := range []int{0, 1, 8, 32} {
				name := fmt.Sprint(parts)
				if parts == 0 {
					name = "unkeyed"
				}
				b.Run(fmt.Sprintf("server=%s/replicas=%d/partitions=%s", srv.name, replicas, name), func(b *testing.B) {
					benchKeyed(b, srv, replicas, parts)
				})
			}
		}
	}
}

// benchKeyed runs one BenchmarkNATSKeyed case; parts 0 is the unkeyed one
// (default partitions, no key published).
func benchKeyed(b *testing.B, srv natsServer, replicas, parts int) {
	keyed, n := parts > 0, parts
	a := newAdmin(b, srv.url)
	stream := uniqueName("HK")
	a.deleteStreams(b, stream, stream+"_POISON")
	cfg := heraldnats.Config{URL: srv.url, StreamName: stream, SubjectPrefix: strings.ToLower(stream), Partitions: n}
	var failed firstError
	newBus := func() *bus.Bus {
		t, err := heraldnats.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		hb, err := bus.New(bus.WithTransport(t), bus.WithAsyncErrorHandler(func(_ string, err error) { failed.set(err) }))
		if err != nil {
			_ = t.Close()
			b.Fatal(err)
		}
		closeLater(b, hb)
		return hb
	}
	c := newCounter(b.N)
	opts := []bus.SubscribeOption{bus.WithConcurrency(8)}
	if keyed {
		opts = append(opts, bus.WithOrderingByKey())
	}
	for range replicas {
		hb := newBus()
		if _, err := bus.Subscribe(hb, "keyed", func(context.Context, BenchEvent) error {
			c.hit()
			return nil
		}, opts...); err != nil {
			b.Fatal(err)
		}
		if err := hb.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	pub := newBus()
	if err := pub.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	keys := make([]bus.PublishOption, keyedKeys)
	for i := range keys {
		keys[i] = bus.WithOrderingKey(fmt.Sprint("key-", i))
	}
	ctx := context.Background()
	runSequential(b, c, 1, func(i int) {
		var opt []bus.PublishOption
		if keyed {
			opt = keys[i%keyedKeys : i%keyedKeys+1]
		}
		if _, err := bus.PublishAsync(ctx, pub, newEvent(i), opt...); err != nil {
			b.Fatal(err)
		}
	})
	if err := failed.get(); err != nil {
		b.Fatal(err)
	}
	a.waitAcked(b, stream)
	s, err := a.js.Stream(ctx, stream)
	if err != nil {
		b.Fatal(err)
	}
	consumers := 0
	for range s.ConsumerNames(ctx).Name() {
		consumers++
	}
	b.ReportMetric(float64(consumers), "consumers")
}
