// Package nats is a Herald transport over NATS JetStream.
//
//	t, err := nats.New(nats.Config{URL: "nats://127.0.0.1:4222"})
//	if err != nil { ... }                     // the server is unreachable, or a bad Config
//	b, err := bus.New(bus.WithTransport(t))   // the bus owns t: b.Close closes it
//
// Handlers, events and middleware are the same as on the memory transport; only
// the transport constructor changes. What NATS adds:
//
//   - Durability: each handler name has a durable consumer per event type, so
//     events published while its service is down are delivered when it comes
//     back, and several processes with one handler name share its events.
//   - Publish returns once the stream has stored the event (its PubAck);
//     concurrent publishes are pipelined on one connection.
//   - Poison records are kept in a stream of their own and survive restarts.
//   - A slow handler or a long retry never causes a concurrent redelivery:
//     the transport sends progress acks while it holds an event.
//
// # Layout on the server
//
// One stream (Config.StreamName, default "HERALD") captures
// "<SubjectPrefix>.>" (default "herald.>"); an event named E is published on
// "<SubjectPrefix>.E", with its ID as Nats-Msg-Id and its metadata as headers
// (see "Headers" below). Handler H consumes
// event E through the durable pull consumer named after (H, E), and replays of
// its poison records through a second one on "<SubjectPrefix>._replay.H"
// (nats-server 2.9 allows one filter subject per consumer). A handler name
// that never ran before starts with the events published after it first
// subscribed, or, subscribed with bus.WithStartFrom, from a point in the past
// ([Transport.SubscriberFrom]); an existing consumer keeps its position.
// Consumers stay when a handler's processes stop: [Transport.Handlers] lists
// them, and [Transport.DeleteHandler] (bus.DeleteHandler) deletes those of a
// handler removed for good. Poison records go to the stream StreamName+"_POISON" on
// "<SubjectPrefix>_poison.<handler token>.<record ID>". Streams and consumers
// are created on first use with the settings of [Config]; an existing stream
// is used as it is. With bus.WithTracking, tracking records go to the
// key-value bucket [Transport.TrackBucket] (see [Transport.DeliveryStore]).
// Requests (bus.Handle, bus.Request) travel on core NATS, on
// [Transport.RequestSubject] ("<SubjectPrefix>_request.<event name>"), outside
// every stream (see [Transport.Request]).
//
// # Headers
//
// An event in the stream carries these headers; a publisher in another
// language sends the same ones:
//
//	Nats-Msg-Id            the event ID, also the stream's dedup ID   required*
//	Herald-Id              the event ID                               required*
//	Herald-Event           the event name                             required
//	Herald-Correlation-Id  the ID of the chain's first event          default: the event ID
//	Herald-Causation-Id    the ID of the event that caused it         default: none
//	Herald-Published-At    RFC 3339 time                              default: none
//	Herald-Ordering-Key    the ordering key (see partitions below)    default: none
//	Content-Type           the payload's codec                        default: application/json
//
// * At least one of the two. The event ID is Herald-Id when present, else
// Nats-Msg-Id; Herald sends Herald-Id only when it differs from Nats-Msg-Id
// (a replay, whose Nats-Msg-Id is its poison record's ID), so a consumer in
// another language reads Herald-Id and falls back to Nats-Msg-Id. Herald
// itself leaves out the defaults, and the metadata given with
// bus.WithMetadata travels as headers of its own name; Nats-* headers other
// than Nats-Msg-Id are the server's. A message without an event ID or
// Herald-Event is poisoned ("not published by Herald?"). A Herald release
// before this layout reads the ID from Herald-Id only: upgrade consumers
// before publishers. Requests ([Transport.Request]) carry Herald-Id, as core
// NATS has no Nats-Msg-Id.
//
// # Ordering by key: partitions
//
// An event published with an ordering key (bus.WithOrderingKey) goes on one
// of Config.Partitions (default 8) subjects of its event type rather than on
// "<SubjectPrefix>.E":
//
//	<SubjectPrefix>._keyed.<p>.E    p = transport.KeyPartition(key, Partitions)
//
// p is the 32-bit FNV-1a hash of the key's bytes modulo Partitions: a
// publisher in another language computes it and publishes there, with the key
// in the Herald-Ordering-Key header. Event names never start with '_', so no
// event's subject is a partition's. Events without a key, and replays, stay on
// their subjects.
//
// A handler subscribed with bus.WithOrderingByKey consumes each partition
// through a durable consumer of its own with MaxAckPending 1, shared by all
// its processes: the server hands out a partition's next event only once the
// previous one is acknowledged, to whichever process asks, so one key's events
// are handled one after another, in publish order, over every replica. The
// bus retries such a handler's failures in process, keeping the partition
// waiting; a poisoned event is acknowledged, and the partition goes on; a
// nacked one (shutdown, an open circuit breaker) is the partition's next; one
// held by a process that died comes back after AckWait, before the later ones.
// Partitions run in parallel: a handler handles at most Partitions keyed
// events at once over all its processes (and, in one process, at most its
// WithConcurrency). Any other handler consumes every partition of E through
// one more consumer, on "<SubjectPrefix>._keyed.*.E".
//
// The cost is consumers on the server: per event type, a handler ordering by
// key has Partitions+2 (its type's, one per partition, its replays'), any
// other handler 3 (its type's, all partitions', its replays'); with
// Partitions -1 (off), 2, and keys are ordered within one process only. More
// partitions let more keys run at once, for more consumers (and, on a
// clustered stream, more Raft groups). BENCHMARKS.md measures 1, 8 and 32.
//
// Every process publishing to or consuming from the stream must use the same
// Partitions. To change it on a live system, drain, then switch: stop the
// publishers of keyed events, let every handler's backlog reach 0 (bus.Stats,
// herald handlers), then start every process with the new value. A handler
// ordering by key with fewer partitions than a publisher misses the events of
// the partitions it lacks; with more, it orders by the publisher's partitions.
// Upgrading from a version without partitions: upgrade the consumers first
// (they then read both subjects), then the publishers; or set Partitions -1
// until every process is upgraded. A handler that switches between ordering
// by key and not leaves the consumers of its former way, for which the stream
// keeps keyed events: the transport logs a warning naming them; delete them
// once no process runs the former way.
//
// With partitions, a handler's keyed and unkeyed events of one type come
// through different consumers: the order of a handler at concurrency 1 holds
// among the events without a key and among those with one, not between the
// two.
//
// # Delivery
//
// Each worker of a handler pulls up to Config.Prefetch events ahead, hands
// them to the bus one at a time (or up to the window the bus asks for through
// transport.WindowSubscriber, for ordering by key), and acks each once the
// bus acks it (the
// handler succeeded, or its poison record is stored). A nack is redelivered
// after the delay the bus asked for (its delayed retries:
// transport.KeyRedeliveryDelay), else after Config.NakDelay, doubling per
// delivery up to Config.MaxNakDelay; a nack caused by shutdown is redelivered
// at once, to any process. The event waits in the stream meanwhile. Every event
// the transport holds is progress-acked each AckWait/3. Closing a subscriber
// gives back the events it prefetched. Delivery is at least once: an ack lost
// with a crash, or AckWait passing in a process that froze, redelivers.
//
// # Servers
//
// It needs nats-server 2.9 or newer with JetStream enabled (-js). On 2.9
// (2.9.10 measured; 2.15 is fine) the server mishandles a redelivery that
// comes due while no pull request of its consumer waits (all processes of the
// handler are down or busy with a full prefetch): the next pull gets the last
// delivered event again, and the redelivered one waits for AckWait. Nothing is
// lost, but one event comes late and another twice; upgrade the server to
// avoid it.
//
// Package natstest starts an embedded server for tests and examples.
package nats
