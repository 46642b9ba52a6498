package transport

import "context"

// BacklogReporter is implemented by transports that can tell how many events
// wait for a handler: the bus reads it for Bus.Stats and for the backlog gauge
// of its metrics. Backlog returns the number of events of topic (an event name
// or [ReplayTopic]) held for the handler and not yet acknowledged by it, in
// every process of that name; what counts exactly is the transport's to
// document (memory: queued and waiting for redelivery; NATS: the durable
// consumer's pending and ack-pending messages, so events fetched and in
// flight too). A handler or topic the transport does not know has a backlog
// of 0, not an error. Backlog may do I/O; it honours ctx and is safe for
// concurrent use. Without it, the bus reports the backlog as unknown (-1) and
// exports no backlog gauge.
type BacklogReporter interface {
	Backlog(ctx context.Context, handler, topic string) (int64, error)
}

// SystemNamer is implemented by transports that name their messaging system
// for telemetry: the messaging.system attribute of OpenTelemetry's messaging
// conventions ("nats", "memory", "kafka", "rabbitmq"), also shown by
// Bus.Stats. The name is read once, when the bus is built. Without it the bus
// uses "herald".
type SystemNamer interface {
	System() string
}

// KeyTraceParent and KeyTraceState carry the W3C trace context of an event
// (https://www.w3.org/TR/trace-context/) when the publishing bus has tracing
// on: the publish span's context, which the consuming bus continues. A
// transport carries them unchanged, like the Key* metadata; they are absent
// when tracing is off. Other propagators configured on the bus add their own
// keys (such as "baggage").
const (
	KeyTraceParent = "traceparent"
	KeyTraceState  = "tracestate"
)
