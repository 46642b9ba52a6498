package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldbus/herald/transport"
)

// Request/reply (Handle, Request): a typed call to one handler, anywhere on the
// transport, that answers.

// ErrNoResponder: a [Request] that no handler answers: nothing registered
// with [Handle] for the request's type, on this bus or (over a broker)
// anywhere.
var ErrNoResponder = transport.ErrNoResponder

// DefaultRequestTimeout bounds a [Request] whose ctx has no deadline.
const DefaultRequestTimeout = 30 * time.Second

// RemoteError is the error a [Request] returns when the handler that answered
// failed: its name and its error's message. The handler's error itself, its
// type and any stack stay in the handler's process; a panic there reads
// "herald: handler panicked: <value>".
type RemoteError struct {
	Handler string // the handler's name
	Message string // its error's message
}

// Error implements error.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("herald: handler %q failed: %s", e.Handler, e.Message)
}

// Handle registers fn as the handler name answering requests of type Req
// ([Request]) with a Resp, and returns its [Subscription].
//
// Names follow [Subscribe]'s rules (a valid NATS subject, unique on this bus:
// [ErrDuplicateHandler]), and one bus has at most one handler per request
// type ([ErrDuplicateHandler] too). Req's name is validated as an event's
// ([ErrInvalidName]); Req and Resp must cross a process boundary with the
// codec ([ErrInvalidEvent]). Every Handle of one name, in this process or in
// others on the same broker, shares the requests (on NATS, a queue group
// named after the handler). As with Subscribe, on a started bus the handler
// answers before Handle returns; before Start it begins with Start; on a
// closed bus Handle returns [ErrClosed]. [Subscription.Stop] and [Bus.Close]
// stop taking requests and let those in flight answer.
//
// fn runs through the middleware chain without retries and without the
// poison queue: the caller decides what a failure means. Bus-wide and
// handler middleware, correlation IDs, logging, tracing, metrics,
// [WithAttemptTimeout], [WithRateLimit], [WithCircuitBreaker] and
// [WithConcurrency] apply; [WithRetry], [WithDedup], [WithOrderingByKey] and
// [WithStartFrom] do not ([ErrInvalidOption]). The handler's ctx ends at the
// requester's deadline. An error or panic of fn reaches the requester as a
// [*RemoteError] carrying its message only.
//
// The transport must carry requests ([transport.Requester]: memory and NATS
// do); otherwise Handle returns an error wrapping errors.ErrUnsupported.
func Handle[Req, Resp any](b *Bus, name string, fn func(context.Context, Req) (Resp, error), opts ...SubscribeOption) (*Subscription, error) {
	if fn == nil {
		return nil, invalid("nil handler func")
	}
	if _, ok := b.cfg.transport.(transport.Requester); !ok {
		return nil, fmt.Errorf("herald: request/reply on %s: %w", b.system, errors.ErrUnsupported)
	}
	return nil, fmt.Errorf("herald: Handle: %w (not implemented yet)", errors.ErrUnsupported)
}

// Request sends req to the handler registered for its type ([Handle]), on
// this bus or anywhere on the transport, and returns its answer.
//
// ctx's deadline bounds the whole call ([DefaultRequestTimeout] when it has
// none) and travels with the request: the handler's ctx ends at it. opts are
// those of [Publish] that apply ([WithMessageID], [WithCorrelationID],
// [WithMetadata]); a request made from a handler's ctx carries its
// correlation ID, as an event would. Request and answer are encoded with the
// bus's codec on every transport, and each is bounded by the maximum event
// size ([ErrEventTooLarge]).
//
// Errors: [ErrNoResponder] when no handler answers requests of this type,
// ctx's error (context.DeadlineExceeded when the deadline passes first), a
// [*RemoteError] when the handler failed, [ErrNotStarted], [ErrClosed],
// [ErrInvalidEvent], [ErrInvalidOption], or an error wrapping
// errors.ErrUnsupported when the transport carries no requests
// ([transport.Requester]).
func Request[Req, Resp any](ctx context.Context, b *Bus, req Req, opts ...PublishOption) (Resp, error) {
	var zero Resp
	if _, ok := b.cfg.transport.(transport.Requester); !ok {
		return zero, fmt.Errorf("herald: request/reply on %s: %w", b.system, errors.ErrUnsupported)
	}
	return zero, fmt.Errorf("herald: Request: %w (not implemented yet)", errors.ErrUnsupported)
}
