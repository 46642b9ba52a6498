package bus

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/adapters/memory"
)

// Transport moves events between publishers and handlers. It is satisfied
// structurally: adapters depend on watermill, not on this package.
//
// Publisher publishes a message to a topic; Publish must return only once the
// transport holds the message, and must honour each message's context.
// Subscriber returns a subscriber that consumes as the durable group
// handlerName: every name gets every message of a topic, and the Subscribe
// calls of one name (in this process or others) share its messages. The bus
// calls Subscribe once per worker. Close releases everything; the bus calls it
// once, from Close.
//
// A transport that also implements [middleware.PoisonStore] keeps the bus's
// poison records. Errors with a TransportClosed() bool method (true) are
// reported by the bus as [ErrClosed]; with an EventTooLarge() bool method, as
// [ErrEventTooLarge].
type Transport interface {
	Publisher() message.Publisher
	Subscriber(handlerName string) (message.Subscriber, error)
	Close() error
}

// localTransport is the in-process fast path of the memory transport: events go
// to handlers as typed values, without encoding.
type localTransport interface {
	Send(ctx context.Context, topic string, d *memory.Delivery) error
	SendTo(ctx context.Context, group, topic string, d *memory.Delivery) error
	Join(group, topic string) (*memory.Queue, error)
}

// Starter is implemented by transports that prepare themselves (connect, create
// streams) when the bus starts. Start must honour ctx.
type Starter interface {
	Start(ctx context.Context) error
}

// topics: an event's topic is its name; replays to one handler go to its own
// topic, which event names (they cannot start with '_') never collide with.
func replayTopic(handler string) string { return "_replay." + handler }
