package benchmarks

import (
	"context"
	"fmt"
	"testing"
)

// e2eBatch is how many events the end-to-end benchmark publishes before it
// waits for their PubAcks (with each implementation's own batch publish).
const e2eBatch = 1000

// startNATSCounted starts impl on srv with n handlers counting on c, which
// waits for b.N events to each.
func startNATSCounted(b *testing.B, srv natsServer, impl natsImpl, n int) (a *admin, c *counter, rig *natsRig) {
	a = newAdmin(b, srv.url)
	c = newCounter(b.N * n)
	return a, c, impl.start(b, a, srv.url, n, func(BenchEvent) { c.hit() })
}

// benchNATSHandlers runs, for each NATS server, implementation and count n
// of 1 and 5 handlers, a sub-benchmark "server=<server>/impl=<impl>/handlers=<n>"
// that hands run the implementation started by startNATSCounted.
func benchNATSHandlers(b *testing.B, run func(b *testing.B, n int, a *admin, c *counter, rig *natsRig)) {
	for _, srv := range natsServers(b) {
		for _, impl := range natsImpls {
			for _, n := range []int{1, 5} {
				b.Run(fmt.Sprintf("server=%s/impl=%s/handlers=%d", srv.name, impl.name, n), func(b *testing.B) {
					a, c, rig := startNATSCounted(b, srv, impl, n)
					run(b, n, a, c, rig)
				})
			}
		}
	}
}

// BenchmarkNATSEndToEnd publishes b.N events in batches of e2eBatch (each
// batch waits for its PubAcks) to 1 and 5 handlers, each a durable consumer
// getting every event, decoding it (JSON) and acking it; the clock stops when
// every handler has handled every event. Then, off the clock, it checks that
// the server has every ack. ns/op is per event, all handlers included.
func BenchmarkNATSEndToEnd(b *testing.B) {
	benchNATSHandlers(b, func(b *testing.B, n int, a *admin, c *counter, rig *natsRig) {
		runEndToEnd(b, c, n, rig.publishBatch)
		a.waitAcked(b, rig.stream)
	})
}

// BenchmarkNATSPublish publishes b.N events from 1, 8 and 64 goroutines, each
// Publish waiting for its own PubAck before the goroutine publishes again.
// No handler consumes; an idle durable consumer makes the stream store every
// event. ns/op is per event.
func BenchmarkNATSPublish(b *testing.B) {
	for _, srv := range natsServers(b) {
		for _, impl := range natsImpls {
			for _, p := range []int{1, 8, 64} {
				b.Run(fmt.Sprintf("server=%s/impl=%s/publishers=%d", srv.name, impl.name, p), func(b *testing.B) {
					a := newAdmin(b, srv.url)
					rig := impl.start(b, a, srv.url, 0, nil)
					runPublishers(b, p, newCounter(0), 0, rig.publish)
				})
			}
		}
	}
}

// BenchmarkNATSPublishBatch publishes b.N events from one goroutine in
// batches of 100, each batch waiting for its PubAcks: Herald's PublishBatch,
// watermill-nats's Publish(topic, msgs...) and jetstream's PublishMsgAsync.
// No handler consumes; an idle durable consumer makes the stream store every
// event. ns/op is per event.
func BenchmarkNATSPublishBatch(b *testing.B) {
	const size = 100
	for _, srv := range natsServers(b) {
		for _, impl := range natsImpls {
			b.Run(fmt.Sprintf("server=%s/impl=%s/batch=%d", srv.name, impl.name, size), func(b *testing.B) {
				a := newAdmin(b, srv.url)
				rig := impl.start(b, a, srv.url, 0, nil)
				runBatches(b, size, newCounter(0), 0, rig.publishBatch)
			})
		}
	}
}

// BenchmarkNATSPerEvent is the way most services publish: one event per
// request, from 8 and 64 goroutines, each Publish waiting for its own PubAck,
// to 1 and 5 handlers that each get every event. The clock stops when every
// handler has handled every event. ns/op is per event, all handlers included.
func BenchmarkNATSPerEvent(b *testing.B) {
	for _, srv := range natsServers(b) {
		for _, impl := range natsImpls {
			for _, p := range []int{8, 64} {
				for _, n := range []int{1, 5} {
					b.Run(fmt.Sprintf("server=%s/impl=%s/publishers=%d/handlers=%d", srv.name, impl.name, p, n), func(b *testing.B) {
						a, c, rig := startNATSCounted(b, srv, impl, n)
						runPublishers(b, p, c, n, rig.publish)
						a.waitAcked(b, rig.stream)
					})
				}
			}
		}
	}
}

// BenchmarkNATSPublishAsync publishes b.N events from one goroutine without
// waiting for each PubAck (Herald's PublishAsync; raw jetstream's
// PublishMsgAsync with 4096 pending at most; watermill-nats has no such call)
// to 1 and 5 handlers; the clock stops when every handler has handled every
// event. ns/op is per event, all handlers included.
func BenchmarkNATSPublishAsync(b *testing.B) {
	benchNATSHandlers(b, func(b *testing.B, n int, a *admin, c *counter, rig *natsRig) {
		if rig.publishAsync == nil {
			b.Skip("no async publish")
		}
		ctx := context.Background()
		runSequential(b, c, n, func(i int) {
			if err := rig.publishAsync(ctx, newEvent(i)); err != nil {
				b.Fatal(err)
			}
		})
		if err := rig.asyncErr(); err != nil {
			b.Fatal(err)
		}
		a.waitAcked(b, rig.stream)
	})
}
