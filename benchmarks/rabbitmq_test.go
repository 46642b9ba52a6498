package benchmarks

import (
	"fmt"
	"testing"
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
				runEndToEnd(b, c, n, rig.publishBatch)
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
				runPublishers(b, publishers, newCounter(0), 0, rig.publish)
			})
		}
	}
}
