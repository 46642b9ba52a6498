package transport

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Metadata keys of request/reply (bus.Handle, bus.Request), on top of the
// event keys (a request carries [KeyID], [KeyEvent], ... as an event does).
const (
	// KeyDeadline is set on a request whose ctx has a deadline: the deadline
	// in RFC 3339 with nanoseconds, UTC. The responder's handler runs with it.
	KeyDeadline = "Herald-Deadline"
	// KeyError is set on a reply when the handler failed: the error's message
	// (never a stack). A reply without it is a success; its payload is the
	// encoded response.
	KeyError = "Herald-Error"
	// KeyHandler is set on every reply: the name of the handler that
	// answered.
	KeyHandler = "Herald-Handler"
)

// Request is one request handed to a responder ([Requester.Respond]). Reply
// sends the answer to the requester; it must be called once per request, from
// any goroutine, and returns an error if the reply could not be sent (the
// requester then sees its own deadline pass). Reply does not keep reply.
type Request struct {
	Message *message.Message
	Reply   func(reply *message.Message) error
}

// Requester is implemented by transports that carry requests to one handler
// and its reply back (bus.Handle, bus.Request).
//
// Request sends req on topic (the request's event name) to one responder of
// that topic and returns its reply. It honours ctx: its deadline bounds the
// wait, and when ctx ends first Request returns an error wrapping ctx's
// error. With no responder for topic anywhere it returns an error wrapping
// [ErrNoResponder]; on a closed transport one wrapping [ErrClosed]; for a
// message too large to carry one wrapping [ErrTooLarge].
//
// Respond makes the caller a responder of topic under the name handler: each
// request of topic goes to one responder, and the responders of one handler
// name, in this process or in others on the same broker, share the requests
// (a queue group on NATS). The channel delivers the requests; it is closed
// once ctx ends, after which no more requests come (requests already taken
// may still be replied to). Requests that arrive while nothing reads the
// channel wait, and those still waiting when ctx ends may be lost (their
// requesters see their deadline pass). Both are safe for concurrent use.
//
// Without it, bus.Handle and bus.Request return an error wrapping
// errors.ErrUnsupported.
type Requester interface {
	Request(ctx context.Context, topic string, req *message.Message) (*message.Message, error)
	Respond(ctx context.Context, handler, topic string) (<-chan Request, error)
}
