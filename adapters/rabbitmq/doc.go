// Package rabbitmq is a Herald transport over RabbitMQ (3.10 or newer, no
// plugin needed).
//
//	t, err := rabbitmq.New(rabbitmq.Config{URL: "amqp://guest:guest@127.0.0.1:5672/"})
//	if err != nil { ... }                     // the broker is unreachable, or a bad Config
//	b, err := bus.New(bus.WithTransport(t))   // the bus owns t: b.Close closes it
//
// Handlers, events and middleware are the same as on the memory and NATS
// transports; only the constructor changes.
//
// # Layout on the broker
//
// With Config.Prefix P (default "herald"):
//
//   - P.events, a durable topic exchange. An event named E is published to it
//     with routing key E, persistent, with its ID as message-id and its
//     metadata as headers under the same names as on NATS (Herald-Id,
//     Herald-Event, ...: see package transport), so a service in another
//     language publishes a Herald event by setting them.
//   - A durable quorum queue per handler H and topic T (see
//     [Transport.QueueName]), bound to P.events with key T, declared when H
//     subscribes. Every handler name gets every event; the processes and
//     workers of one name compete for its events; events published while
//     none runs wait in the queue. A name that never ran before starts with
//     the events published after its queue was declared. Replays of H's
//     poison records go to a second queue of H, bound with key
//     transport.ReplayTopic(H), which stays while H is down.
//   - P.wait.<delay>: a fanout exchange and a quorum queue with that message
//     TTL, dead-lettered (at least once) to the default exchange. A nacked
//     event is copied there with its handler's queue name as routing key and
//     comes back to that queue alone after the delay.
//   - P.poison, a stream queue of poison records (see [Transport.PutPoison]).
//
// # Delivery
//
// Each worker consumes on a channel of its own with Config.Prefetch
// unacknowledged deliveries at most (basic.qos), hands them to the bus one at
// a time (or n at a time for ordering by key), and acks each once the bus
// acks it (the handler succeeded, or its poison record is stored). A nack is
// redelivered after Config.NakDelay, doubling per delivery up to
// Config.MaxNakDelay, through the wait queues; a nack caused by shutdown is
// requeued at once, to any process. The delivery count (the quorum queue's
// x-delivery-count, plus the deliveries before a delay) becomes
// Herald-Delivery-Count, the bus's attempt number. Publish returns nil only
// once the broker has confirmed the event (publisher confirms), that is once
// every queue bound to its key holds it.
//
// # Connection loss
//
// The transport keeps one connection and replaces it when it is lost (a
// broker restart, a network failure), dialling again after
// Config.ReconnectWait, doubling up to Config.MaxReconnectWait. Meanwhile the
// broker has requeued every unacknowledged delivery; each worker consumes
// again on the new connection. An ack given to a delivery of the lost
// connection cannot be sent (the event comes again: at least once, as the
// contract says), and an ack the broker received is never undone. A publish
// waits for the connection within its ctx (or Config.PublishTimeout), and a
// publish whose confirm was lost with the connection returns an error: it may
// have been stored, so publishing it again may deliver it twice (RabbitMQ has
// no duplicate detection; give handlers bus.WithDedup if that matters).
//
// # Why amqp091-go and not watermill-amqp
//
// The transport is written on github.com/rabbitmq/amqp091-go, the client
// watermill-amqp/v3 itself uses, and speaks watermill's message.Publisher
// and message.Subscriber, so the bus treats it as any other watermill
// transport. watermill-amqp v3.0.2 does not fit the contract: its publisher
// sends one message at a time per pooled channel and waits for its confirm
// without a ctx (no pipelining, no deadline), it fails at once while
// disconnected; its subscriber requeues a nack at once to the head of the
// queue (no delayed redelivery, so an open circuit breaker would spin), has
// no delivery count, hands out one message per subscription (no
// WindowSubscriber for ordering by key), and its topology builder declares
// classic queues unless rebuilt; it keeps no poison records. The benchmarks
// module measures it beside this transport.
//
// # Poison records
//
// Records are kept in the stream queue P.poison, which survives restarts and
// which every process reads from any offset. Streams cannot delete a message,
// so a purge or replay appends a tombstone; each transport keeps an index of
// the live records in memory, fed by a consumer that follows the stream. See
// [Transport.PutPoison] for the details and the cost. Config.PoisonMaxAge
// bounds how long the stream keeps them.
//
// # Tests
//
// Package rabbitmqtest gives tests the broker at RABBITMQ_URL, a prefix per
// test, and a sweep of what a test package declared.
package rabbitmq
