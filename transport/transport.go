package transport

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Transport moves events from publishers to handlers.
//
// Publisher returns the publisher the bus sends every event through. Its
// Publish must return nil only once the transport holds every message given
// (so that a crash of the publishing process loses none of them), must wait
// while the transport is full, honouring each message's context, and must be
// safe for concurrent use. It returns an error wrapping [ErrClosed] once the
// transport is closed and [ErrTooLarge] for a message the transport cannot
// carry. The topic is an event name (see [ValidName]) or a replay topic
// ([ReplayTopic]). Publisher is called once, by bus.New; the bus never calls
// the publisher's Close (Transport.Close releases it).
//
// Subscriber returns a subscriber that consumes as the group handler: every
// handler name gets every message of a topic, and all Subscribe calls of one
// name, in this process or in others on the same broker, share its messages
// (competing consumers). The bus calls it when a handler starts and Closes the
// subscriber when the handler stops. Each Subscribe call returns a channel
// that delivers one message at a time: the next comes after the previous one
// was acked or nacked (see [WindowSubscriber] for more). A nacked message must
// come back later, never be dropped; an unacked one must come back if the
// subscriber or its process goes away. The channel is closed when the
// Subscribe ctx ends or the subscriber is closed. A transport may report in
// each message's metadata how many times it was delivered ([KeyDeliveryCount]).
//
// Close releases everything the transport holds (connections, goroutines). The
// bus calls it once, from its own Close, after every subscriber is closed.
// Calls after Close return errors wrapping [ErrClosed].
type Transport interface {
	Publisher() message.Publisher
	Subscriber(handler string) (message.Subscriber, error)
	Close() error
}

// Starter is implemented by transports that prepare themselves (connect,
// create streams) when the bus starts. The bus calls Start once, from its own
// Start, before any Subscriber; Start must honour ctx and may be called again
// after it failed. A transport without Start prepares itself on first use.
type Starter interface {
	Start(ctx context.Context) error
}

// BatchPublisher is implemented by transports that publish many messages at
// once and wait for their acknowledgements together (NATS pipelines them).
// PublishBatch returns nil only once the transport holds every message, in
// order; on an error some may be held already. It honours ctx. Without it the
// bus publishes a batch through Publisher().Publish.
type BatchPublisher interface {
	PublishBatch(ctx context.Context, topic string, msgs []*message.Message) error
}

// WindowSubscriber is implemented by subscribers (the values Subscriber
// returns) that can hand out more than one message before the earlier ones
// are settled. SubscribeWindow is Subscribe with up to window messages
// unsettled at once, delivered in the transport's order; the receiver acks or
// nacks them in any order. The bus uses it for ordering by key, where
// different keys run in parallel on one subscription. Without it, the bus
// falls back to Subscribe (one message at a time: order holds, keys run one
// after another).
type WindowSubscriber interface {
	SubscribeWindow(ctx context.Context, topic string, window int) (<-chan *message.Message, error)
}

// ReplayTopic is the topic of replays to one handler: a poison record replayed
// is published there, and the handler's subscription consumes it beside its
// event topic. Event names never start with '_', so it cannot collide with one.
func ReplayTopic(handler string) string { return "_replay." + handler }

// AsyncPublisher is implemented by transports that publish without waiting
// for the broker's acknowledgement. PublishAsync sends msg on topic and
// returns once it is sent (it may wait, honouring ctx, while the transport's
// own window of unacknowledged publishes is full); done is then called
// exactly once, from any goroutine, with nil once the transport holds the
// message or with the error that lost it (including transport.ErrClosed when
// the transport closes first). When PublishAsync returns an error, nothing
// was sent and done is never called. done must not block. Without it, the bus
// runs a Publish per message on its own goroutines, bounded by its window.
type AsyncPublisher interface {
	PublishAsync(ctx context.Context, topic string, msg *message.Message, done func(error)) error
}

// KeyedSubscriber is implemented by subscribers whose transport keeps the
// events of one ordering key ([KeyOrderingKey]) in order across every process
// of a handler, not only within one (NATS, with partitions). SubscribeKeyed
// is SubscribeWindow for a handler that orders by key: events without a key
// come up to window at a time, as SubscribeWindow gives them; the events of
// one key come one at a time over every subscriber of the handler's name on
// the broker, in publish order: the next one of a key is handed out, here or
// in another process, only once the previous one is acked; a nacked one comes
// again before any later event of its key, and one whose process died comes
// again (after the transport's ack timeout) before them too. The channel
// closes as Subscribe's does. The bus uses it for handlers with
// bus.WithOrderingByKey; without it, it uses SubscribeWindow, and keys are
// ordered within one process only.
type KeyedSubscriber interface {
	SubscribeKeyed(ctx context.Context, topic string, window int) (<-chan *message.Message, error)
}

// KeyPartition returns the partition of an ordering key among n (n > 0): the
// 32-bit FNV-1a hash of the key's bytes (offset basis 2166136261, prime
// 16777619, each byte XORed in then multiplied, modulo 2^32), modulo n. It is
// the partition a transport with partitioned subjects publishes a keyed event
// to (NATS: see package adapters/nats), so that a publisher in another
// language can compute it, and the worker the bus gives a key to within one
// process. It is 0 when n < 1.
func KeyPartition(key string, n int) int {
	if n < 1 {
		return 0
	}
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}
