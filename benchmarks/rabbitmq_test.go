package benchmarks

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkRabbitMQEndToEnd publishes b.N events in batches of e2eBatch (each
// batch waits for its publisher confirms) to 1 and 5 handlers, each a durable
// quorum queue getting every event, decoding it (JSON) and acking it; the
// clock stops when every handler has handled every event. Then, off the
// clock, it checks that the queues are empty (every ack arrived). ns/op is
// per event, all handlers included. It needs RABBITMQ_URL.
func BenchmarkRabbitMQEndToEnd(b *testing.B) {
	url := rabbitURL(b)
	for _, impl := range rabbitImpls {
		for _, n := range []int{1, 5} {
			b.Run(fmt.Sprintf("impl=%s/handlers=%d", impl.name, n), func(b *testing.B) {
				a := newRabbitAdmin(b, url)
				c := newCounter(b.N * n)
				rig := impl.start(b, a, url, n, func(BenchEvent) { c.hit() })
				batch := make([]BenchEvent, 0, e2eBatch)
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					batch = append(batch, newEvent(i))
					if len(batch) == cap(batch) || i == b.N-1 {
						if err := rig.publishBatch(ctx, batch); err != nil {
							b.Fatal(err)
						}
						batch = batch[:0]
					}
				}
				c.wait(b, 5*time.Minute)
				b.StopTimer()
				reportThroughput(b, b.N, n)
				a.waitEmpty(b, rig.queues)
			})
		}
	}
}

// BenchmarkRabbitMQPublish publishes b.N events from 8 goroutines, each
// Publish waiting for its own publisher confirm before the goroutine
// publishes again, to 1 and 5 bound quorum queues that nobody consumes (the
// broker writes every event to each). ns/op is per event.
func BenchmarkRabbitMQPublish(b *testing.B) {
	url := rabbitURL(b)
	const publishers = 8
	for _, impl := range rabbitImpls {
		for _, n := range []int{1, 5} {
			b.Run(fmt.Sprintf("impl=%s/queues=%d/publishers=%d", impl.name, n, publishers), func(b *testing.B) {
				a := newRabbitAdmin(b, url)
				rig := impl.start(b, a, url, -n, nil)
				ctx := context.Background()
				var next atomic.Int64
				var wg sync.WaitGroup
				var failed atomic.Pointer[error]
				b.ReportAllocs()
				b.ResetTimer()
				for range publishers {
					wg.Go(func() {
						for {
							i := next.Add(1)
							if i > int64(b.N) {
								return
							}
							if err := rig.publish(ctx, newEvent(int(i))); err != nil {
								failed.CompareAndSwap(nil, &err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				if err := failed.Load(); err != nil {
					b.Fatal(*err)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}
