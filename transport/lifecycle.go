package transport

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// KeyRedeliveryDelay is set by the bus on a message it received, just before
// it nacks it, never by a publisher and never sent on the wire: how long the
// transport should wait before it delivers the message again, as a Go
// duration ("1.5s", see time.ParseDuration). The bus sets it for the delayed
// stage of its retries. A transport that honours it redelivers the message
// after that delay, without holding anything of the receiver's meanwhile (NATS
// naks with that delay; memory re-queues it on a timer). One that ignores it
// redelivers after its own delay, which is allowed: a nacked message only has
// to come back later. A missing or unparsable value means the transport's own
// delay.
const KeyRedeliveryDelay = "Herald-Redelivery-Delay"

// RedeliveryDelay returns the delay the bus asked for in msg's metadata
// ([KeyRedeliveryDelay]), and false when it asked for none or the value is
// not a positive duration.
func RedeliveryDelay(msg *message.Message) (time.Duration, bool) {
	v := msg.Metadata.Get(KeyRedeliveryDelay)
	if v == "" {
		return 0, false
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, false
	}
	return d, true
}

// History is implemented by transports that keep events after they were
// published, so that a handler name that never consumed before can start from
// a point in the past. SubscriberFrom is Subscriber, except that a durable
// consumer it creates for a topic (one the handler name never had) starts
// with the first event the transport still holds that was published at or
// after from; the zero time means the oldest event it still holds. A consumer
// that already exists keeps its position: from never moves it. The bus calls
// it instead of Subscriber for a handler subscribed with bus.WithStartFrom.
// Without it, such a handler starts, as any other, with the events published
// after it subscribed.
type History interface {
	SubscriberFrom(handler string, from time.Time) (message.Subscriber, error)
}

// HandlerInfo describes what a transport keeps for one handler name.
type HandlerInfo struct {
	// Name is the handler's name.
	Name string
	// Topics are the topics the transport keeps a position or queue of the
	// handler for, sorted; its replay topic ([ReplayTopic]) among them if it
	// has one.
	Topics []string
	// Pending is how many events the transport keeps for the handler that it
	// has not acknowledged yet: waiting to be delivered, or delivered and not
	// yet acknowledged, over all its topics.
	Pending uint64
}

// Handlers is implemented by transports that keep state for handler names
// (durable consumers, queues) that can outlive the processes that subscribed
// them, so that a handler that was removed or renamed can be found and its
// state deleted: without that, a broker such as NATS keeps every later event
// for it.
//
// Handlers lists every handler name the transport keeps state for, sorted by
// name, subscribed anywhere or nowhere. DeleteHandler removes all of it for
// one name: its consumers (or queues) for every topic, its replay one
// included, so that the transport stops keeping events for it; found is false
// if there was nothing to remove. DeleteHandler must not be called while a
// subscriber of the name runs (the bus refuses to while the name is
// subscribed on that bus); if one does, in another process, the transport may
// create its state again. Both honour ctx, are safe for concurrent use, and
// return errors wrapping [ErrClosed] on a closed transport.
//
// Without it the bus knows no handler state: it lists none, and deleting a
// handler only checks that the name is not subscribed.
type Handlers interface {
	Handlers(ctx context.Context) ([]HandlerInfo, error)
	DeleteHandler(ctx context.Context, handler string) (found bool, err error)
}
