package bus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
	wmmiddleware "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/internal/event"
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
	if err := b.requester(); err != nil {
		return nil, err
	}
	if err := transport.ValidName(name); err != nil {
		return nil, fmt.Errorf("handler %q: %w", name, err)
	}
	et := typeOf[Req]()
	if et.err != nil {
		return nil, et.err
	}
	if b.jsonCodec {
		if et.planErr != nil {
			return nil, et.planErr
		}
		if _, err := event.PlanJSON(reflect.TypeFor[Resp]()); err != nil {
			return nil, fmt.Errorf("response of %s: %w", et.name, err)
		}
	}
	sc := subConfig{concurrency: 1, request: true}
	for _, o := range opts {
		if o == nil {
			return nil, invalid("nil subscribe option")
		}
		if err := o.applySub(&sc); err != nil {
			return nil, err
		}
	}
	codec, limit := b.cfg.codec, b.cfg.maxEventSize
	terminal := func(msg *message.Message) ([]*message.Message, error) {
		var resp Resp
		typed := event.New(et.name, func(ctx context.Context, req Req) (err error) {
			resp, err = fn(ctx, req)
			return err
		}, codec, true)
		if _, err := typed(msg); err != nil {
			return nil, err
		}
		payload, err := codec.Marshal(resp)
		if err != nil {
			return nil, fmt.Errorf("%w: response of %s: %w", ErrInvalidEvent, et.name, err)
		}
		if len(payload) > limit {
			return nil, fmt.Errorf("%w: response of %s is %d bytes encoded, the limit is %d", ErrEventTooLarge, et.name, len(payload), limit)
		}
		return []*message.Message{message.NewMessage(msg.UUID, payload)}, nil
	}
	return b.subscribe(name, et.name, terminal, sc)
}

// requester returns an error wrapping errors.ErrUnsupported when the
// transport carries no requests.
func (b *Bus) requester() error {
	if _, ok := b.cfg.transport.(transport.Requester); !ok {
		return fmt.Errorf("herald: request/reply over %s: %w", b.system, errors.ErrUnsupported)
	}
	return nil
}

// Request sends req to the handler registered for its type ([Handle]), on
// this bus or anywhere on the transport, and returns its answer.
//
// ctx's deadline bounds the whole call ([DefaultRequestTimeout] when it has
// none) and travels with the request: the handler's ctx ends at it. opts are
// those of [Publish] ([WithMessageID], [WithCorrelationID], [WithMetadata];
// an ordering key means nothing here); a request made from a handler's ctx
// carries its correlation ID, as an event would. Request and answer are
// encoded with the bus's codec on every transport, and each is bounded by the
// maximum event size ([ErrEventTooLarge]).
//
// Errors: [ErrNoResponder] when no handler answers requests of this type,
// ctx's error (context.DeadlineExceeded when the deadline passes first), a
// [*RemoteError] when the handler failed, [ErrNotStarted], [ErrClosed],
// [ErrInvalidEvent] (also for an answer that does not decode as a Resp),
// [ErrInvalidOption], or an error wrapping errors.ErrUnsupported when the
// transport carries no requests ([transport.Requester]).
func Request[Req, Resp any](ctx context.Context, b *Bus, req Req, opts ...PublishOption) (Resp, error) {
	var resp Resp
	et := typeOf[Req]()
	if et.err != nil {
		return resp, et.err
	}
	reply, err := b.request(ctx, et, req, opts)
	if err != nil {
		return resp, err
	}
	if err := b.cfg.codec.Unmarshal(reply.Payload, &resp); err != nil {
		return resp, fmt.Errorf("%w: the answer to %s is not a %T: %v", ErrInvalidEvent, et.name, resp, err)
	}
	return resp, nil
}

func (b *Bus) request(ctx context.Context, et *eventType, v any, opts []PublishOption) (*message.Message, error) {
	if err := b.requester(); err != nil {
		return nil, err
	}
	meta, payload, pc, err := b.publishable(ctx, et, v, opts)
	if err == nil && payload == nil { // in process, prepare may not encode
		payload, err = b.encode(et, v)
	}
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	if b.obs != nil && b.obs.tracing != nil {
		pc = b.traceMetadata(ctx, pc) // the handler's span continues the caller's trace
	}
	msg := b.message(ctx, meta, payload, pc)
	deadline, _ := ctx.Deadline()
	msg.Metadata[transport.KeyDeadline] = deadline.UTC().Format(time.RFC3339Nano)
	reply, err := b.cfg.transport.(transport.Requester).Request(ctx, et.name, msg)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			return nil, fmt.Errorf("herald: request %s: %w (%w)", et.name, cerr, err)
		}
		return nil, fmt.Errorf("herald: request %s: %w", et.name, err)
	}
	if err := ctx.Err(); err != nil { // the answer came too late
		return nil, fmt.Errorf("herald: request %s: %w", et.name, err)
	}
	if m := reply.Metadata.Get(transport.KeyError); m != "" {
		return nil, &RemoteError{Handler: reply.Metadata.Get(transport.KeyHandler), Message: m}
	}
	return reply, nil
}

// startServe makes the handler a responder of its request type; its workers
// answer until the subscription stops.
func (s *Subscription) startServe() error {
	rctx, stop := context.WithCancel(context.Background())
	reqs, err := s.b.cfg.transport.(transport.Requester).Respond(rctx, s.name, s.event)
	if err != nil {
		stop()
		return err
	}
	s.wg.Go(func() {
		<-s.stop // then the transport sends no more requests, and closes reqs
		stop()
	})
	for range s.cfg.concurrency {
		var loop func()
		loop = func() {
			for r := range reqs {
				s.answer(r, loop)
			}
		}
		s.goWorker(loop)
	}
	return nil
}

// answer runs the chain on one request and replies. A runtime.Goexit in the
// handler ends this goroutine: answer then replies with an error and starts
// a replacement worker running again.
func (s *Subscription) answer(r transport.Request, again func()) {
	msg := message.NewMessage(r.Message.UUID, r.Message.Payload)
	msg.Metadata = maps.Clone(r.Message.Metadata)
	if msg.Metadata == nil {
		msg.Metadata = message.Metadata{}
	}
	ctx := s.ctx
	if dl, err := time.Parse(time.RFC3339Nano, msg.Metadata.Get(transport.KeyDeadline)); err == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl)
		defer cancel()
	}
	msg.SetContext(ctx)
	event.Bind(msg, s.name, 1)
	var out []*message.Message
	err := errors.New("herald: handler called runtime.Goexit")
	normal := false
	defer func() {
		if !normal {
			if v := recover(); v != nil {
				err = fmt.Errorf("herald: panic outside the middleware chain: %v", v)
			}
			s.b.cfg.logger.Error("request handler ended abnormally; worker replaced", zap.String("handler", s.name), zap.Error(err))
			s.reply(r, nil, err)
			s.goWorker(again)
		}
	}()
	out, err = s.chain(msg)
	normal = true
	if ctx.Err() == context.DeadlineExceeded && s.ctx.Err() == nil {
		// The request's deadline passed: its caller gave up and reports
		// its own context.DeadlineExceeded; no one reads an answer.
		s.b.cfg.logger.Debug("request answered after its deadline; no reply sent", zap.String("handler", s.name),
			zap.String("request_id", msg.UUID), zap.Error(err))
		return
	}
	if err == nil && len(out) != 1 {
		err = fmt.Errorf("herald: the middleware returned %d answers, not 1", len(out))
	}
	s.reply(r, out, err)
}

// reply sends the answer, or the error's message.
func (s *Subscription) reply(r transport.Request, out []*message.Message, err error) {
	var m *message.Message
	if err != nil {
		m = message.NewMessage(r.Message.UUID, nil)
		m.Metadata.Set(transport.KeyError, remoteMessage(err))
	} else {
		m = out[0]
		if m.Metadata == nil {
			m.Metadata = message.Metadata{}
		}
		if !s.b.jsonCodec {
			m.Metadata.Set(transport.KeyContentType, s.b.cfg.codec.ContentType())
		}
	}
	m.Metadata.Set(transport.KeyHandler, s.name)
	if rerr := r.Reply(m); rerr != nil {
		s.b.cfg.logger.Warn("cannot send a reply", zap.String("handler", s.name), zap.String("request_id", r.Message.UUID), zap.Error(rerr))
	}
}

// maxRemoteMessage bounds the error message a reply carries.
const maxRemoteMessage = 4096

// remoteMessage is the message of err a reply carries: never a stack (a
// panic's is left out), line breaks and other control characters made
// spaces (it travels as a header), at most maxRemoteMessage bytes.
func remoteMessage(err error) string {
	msg := err.Error()
	var wpe wmmiddleware.RecoveredPanicError
	if errors.As(err, &wpe) {
		msg = fmt.Sprintf("herald: middleware panicked: %v", wpe.V)
	}
	msg = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(msg, "?"))
	if len(msg) > maxRemoteMessage {
		cut := maxRemoteMessage
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut]
	}
	if msg == "" {
		msg = "herald: handler failed"
	}
	return msg
}
