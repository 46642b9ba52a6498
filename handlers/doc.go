// Package handlers turns typed Go functions into watermill handlers and carries
// the metadata of the event being handled.
//
// A handler is a func(context.Context, E) error. [New] wraps it behind the
// non-generic [message.HandlerFunc], so every watermill middleware can wrap it.
// Inside the handler, [FromContext] returns the [Metadata] of the delivery:
// event ID, name, correlation and causation IDs, attempt, publish time and the
// handler's name.
//
// Event names come from an EventName() string method ([Namer]) or from the Go
// type ("orders.OrderPlaced"); they are validated once per type as NATS subject
// tokens ([NameOf], [ValidateName]).
//
// The wire format is a [Codec] (JSON by default) plus metadata entries whose
// keys are the Key* constants; on NATS they travel as message headers, so any
// service that sets them can publish events Herald handlers accept.
package handlers
