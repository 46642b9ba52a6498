// Package kafka is a Herald transport over Apache Kafka.
//
//	t, err := kafka.New(kafka.Config{Brokers: []string{"127.0.0.1:9092"}})
//	if err != nil { ... }                     // an invalid Config
//	b, err := bus.New(bus.WithTransport(t))   // the bus owns t: b.Close closes it
//
// Handlers, events and middleware are the same as on the memory and NATS
// transports; only the transport constructor changes. Package kafkatest runs
// an in-process cluster (franz-go's kfake) for tests and examples.
//
// # Why franz-go
//
// The transport is built on github.com/twmb/franz-go (kgo, kadm), not on
// watermill-kafka/v3 (Sarama). Herald's contract needs offsets committed
// only up to the lowest event not yet settled, with several events of a
// partition in flight at once and settled in any order
// (transport.WindowSubscriber), and a commit of what was settled before a
// partition moves in a rebalance. watermill-kafka acknowledges one message
// at a time per partition and marks offsets as they are acked, and Sarama's
// group handling leaves no hook to wait for the events in flight of a
// revoked partition. franz-go gives explicit commits (CommitOffsets),
// rebalance callbacks that run serially with polling
// (BlockRebalanceOnPoll), an idempotent producer with acks=all by default,
// and an admin client for topics and offsets. The transport still speaks
// watermill's message.Publisher and message.Subscriber.
//
// # Layout on the cluster
//
// An event named E goes to the topic TopicPrefix+E (default "herald.E"),
// created on first use with Config.Partitions (default 1). Its record key
// is the ordering key (bus.WithOrderingKey), so one key's events share a
// partition and stay in order; its headers carry Herald's metadata under the
// same names as on NATS (Herald-Id, Herald-Event, ...: see package
// transport). Handler H consumes as the consumer group GroupPrefix+H
// (default "herald.H"): every handler name gets every event, and the
// processes of one name share the topic's partitions. Replays of H's poison
// records and nacked events of H go to the topic of "_replay.H", which H's
// group also consumes. Poison records go to TopicPrefix+"_poison".
//
// # Delivery
//
// Each process of a handler has one group member per topic, which polls
// up to Config.Prefetch records ahead and hands them to the handler's
// workers: one at a time per worker, or a window of them for ordering by
// key. A partition's offset is committed (each CommitInterval) up to its
// lowest record not settled yet: a record is settled when the handler
// succeeded, when its poison record is stored, or when it was moved to the
// replay topic. A crash therefore redelivers what was not committed,
// including settled records behind an unsettled one (at least once).
//
// A nacked event (deferred by a circuit breaker or dedup, a poison store
// that failed, a panic in middleware) is delivered again by the same
// member after NakDelay (doubling up to MaxNakDelay), up to
// LocalRedeliveries times; its partition's commit point waits for it, the
// records behind it flow on. After that it is copied to the replay topic
// with the time it is due, and committed: it comes back after the events
// published behind it, and it never holds a partition's commits for more
// than those few delays. An event nacked at shutdown (its context ended)
// stays uncommitted and goes, in its place, to the partition's next owner.
//
// When a rebalance takes partitions away from a process, it stops handing
// them out, waits (up to RevokeTimeout) for their records in flight,
// commits, and only then lets the partitions move: a key's events are not
// handled by two processes at once, and none is handled twice. A process
// that leaves (Stop, Close) commits what was settled; the records it had
// not settled go to the next owner, with the settled records behind them.
//
// # Start position and history
//
// A handler name that never consumed a topic starts at Config.StartFrom:
// StartNew (the default: the events published after its first Subscribe
// began, as on NATS), StartEarliest (the topic's whole history is replayed
// to it) or StartAt(t) (from a time). The position is committed for the
// group at its first Subscribe; from then on the group resumes where it
// stopped, also after every process was down. Kafka deletes the committed
// offsets of a group that stayed empty longer than the broker's
// offsets.retention.minutes (7 days by default): such a handler starts
// again at StartFrom.
//
// # Poison records
//
// The transport is a transport.PoisonStore. Records are JSON in a compacted
// topic of one partition, keyed by record ID; a purge writes a tombstone
// (logical delete), which hides the record at once and lets compaction
// remove both. Each transport keeps a view of the topic in memory, brought
// up to date (one ListOffsets request, then the new records) before each
// call, so a record stored by one process is seen by the next call of any
// other. The view holds the live records: memory grows with the poison
// queue.
//
// # What differs from NATS
//
//   - Order is per partition: with Partitions > 1, events without an
//     ordering key keep no order, and replicas of a handler share the
//     partitions (each partition is one replica's at a time).
//   - A crashed process's records are redelivered when the group notices
//     (SessionTimeout), from the last commit: settled records behind an
//     unsettled one come again.
//   - Duplicate publishes (bus.WithMessageID) are delivered twice: Kafka's
//     idempotent producer drops the retries of one producer, not a publish
//     repeated by the application.
//   - Replay needs the handler's replay topic, which exists once the
//     handler has subscribed (transport.ErrNoHandler otherwise).
package kafka
