// Package benchmarks compares Herald with its peers, side by side in one run:
//
//   - in memory: Herald on its memory transport with the default middleware
//     chain, Watermill's cqrs EventBus and EventProcessor over GoChannel, and a
//     plain buffered Go channel per handler (the floor);
//   - over NATS JetStream: Herald's NATS transport, raw watermill-nats/v2
//     (pkg/jetstream, AckAsync, durable consumers), and raw nats.go jetstream
//     (PublishMsgAsync and a pull consumer with Consume: the floor);
//   - over RabbitMQ: Herald's RabbitMQ transport, raw watermill-amqp/v3 (topic
//     exchange, quorum queues, ConfirmDelivery), and raw amqp091-go (deferred
//     confirms on one channel, a consumer per handler: the floor).
//
// It is a module of its own, so the library's go.mod gains none of its
// dependencies. Every benchmark publishes the same event, [BenchEvent]. The
// package has no API: the benchmarks are in its _test files, and cmd/report
// runs them and writes BENCHMARKS.md and the charts. README.md says how.
package benchmarks

import "time"

// BenchEvent is the event of every benchmark: five fields, about 200 bytes as
// JSON. The latency benchmarks carry the publish time in PlacedAt.
type BenchEvent struct {
	OrderID    string    `json:"order_id"`
	CustomerID string    `json:"customer_id"`
	Amount     int64     `json:"amount_cents"`
	Currency   string    `json:"currency"`
	PlacedAt   time.Time `json:"placed_at"`
}
