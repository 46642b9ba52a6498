// Package handlers is what a handler's author uses inside a handler: the
// [Metadata] of the event being handled ([FromContext]), [Permanent] to mark a
// failure that retrying cannot fix, and [Namer] to choose an event's name.
//
// A handler is a func(context.Context, E) error given to bus.Subscribe.
// Returning nil acknowledges the event; an error asks for a retry, and a
// [Permanent] one sends the event to the poison queue at once. A panic becomes
// a [*PanicError] and is treated as an error. Errors that reach the bus from
// the transport side, such as a payload that cannot be decoded, are a
// [*DecodeError] and are never retried.
//
// Event names come from an EventName() string method ([Namer]) or from the Go
// type: package name and type name, "orders.OrderPlaced". Moving a type to
// another package changes its name and so its subject: give events that cross
// services an EventName method, or keep them in one shared package.
package handlers
