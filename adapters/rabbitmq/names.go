package rabbitmq

import (
	"fmt"
	"strings"
	"time"

	"github.com/heraldbus/herald/internal/adapterkit"
	"github.com/heraldbus/herald/transport"
)

// Names on the broker. With prefix P:
//
//	P.events                    topic exchange: an event named E has routing key E,
//	                            a replay to handler H has routing key transport.ReplayTopic(H)
//	P.q.H/T.<hash>              quorum queue of handler H on topic T, bound to P.events with key T
//	P.wait.<delay>              fanout exchange and quorum queue with that message TTL,
//	                            dead-lettered to the default exchange (back to the queue
//	                            named by the message's routing key)
//	P.poison                    stream of poison records and their deletions

// validRoutingKey reports whether s can be a topic or handler name here: a
// valid Herald name (transport.ValidName) with no token "#", which a topic
// exchange would read as a wildcard in a binding.
func validRoutingKey(s string) error {
	if err := transport.ValidName(s); err != nil {
		return err
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "#" {
			return fmt.Errorf("herald/rabbitmq: %w: %q has the token \"#\", a wildcard of topic exchanges", transport.ErrInvalidName, s)
		}
	}
	return nil
}

func (t *Transport) exchange() string   { return t.cfg.Prefix + ".events" }
func (t *Transport) poisonName() string { return t.cfg.Prefix + ".poison" }

// QueueName returns the name of the quorum queue through which handler
// consumes topic (an event name, or transport.ReplayTopic(handler)): readable
// ("<Prefix>.q.<handler>/<topic>", cut to fit), then a hash of the pair, so
// that distinct pairs never share a queue. Operators can watch its depth.
func (t *Transport) QueueName(handler, topic string) string {
	return queueName(t.cfg.Prefix, handler, topic)
}

func queueName(prefix, handler, topic string) string {
	readable := prefix + ".q." + handler + "/" + topic
	const maxReadable = 255 - 13 // a queue name is at most 255 bytes
	if len(readable) > maxReadable {
		readable = readable[:maxReadable]
	}
	return readable + "." + adapterkit.Hash(handler+"\x00"+topic)
}

// waitName is the exchange and queue of the redeliveries delayed by d.
func waitName(prefix string, d time.Duration) string {
	return fmt.Sprintf("%s.wait.%dms", prefix, d.Milliseconds())
}
