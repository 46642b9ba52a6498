package event

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/handlers"
)

// New wraps fn as a watermill handler for the event named name.
//
// The returned handler takes the typed value of an in-process delivery as it is
// (no decode; a *E is dereferenced) unless alwaysDecode is set; otherwise, or
// when the value is of another Go type with the same event name, it decodes
// the payload with codec, encoding the value first if needed. It returns a [*handlers.DecodeError] for a message without Herald metadata, a
// message carrying another event name, or a payload codec cannot decode; a panic
// in fn becomes a [*handlers.PanicError] with the stack. It never produces messages.
func New[E any](name string, fn func(context.Context, E) error, codec handlers.Codec, alwaysDecode bool) message.HandlerFunc {
	return func(msg *message.Message) (_ []*message.Message, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = &handlers.PanicError{Value: r, Stack: string(debug.Stack())}
			}
		}()
		d := deliveryOf(msg)
		if d != nil {
			if d.ev.err != nil {
				if de, ok := d.ev.err.(*handlers.DecodeError); ok {
					cp := *de
					cp.Event = name
					return nil, &cp
				}
				return nil, &handlers.DecodeError{Event: name, Reason: "bad metadata", Err: d.ev.err}
			}
			if n := d.event().Name; n != "" && n != name {
				return nil, &handlers.DecodeError{Event: name, Reason: fmt.Sprintf("message carries event %q, not %q", n, name)}
			}
		}
		if d != nil && d.ev.Value != nil && !alwaysDecode {
			switch v := d.ev.Value.(type) {
			case E:
				return nil, fn(msg.Context(), v)
			case *E: // published as a pointer: same event name, same value
				if v != nil {
					return nil, fn(msg.Context(), *v)
				}
			}
			// Another Go type with the same event name: go through the codec,
			// exactly as over a remote transport.
		}
		e, err := decode[E](msg, name, codec)
		if err != nil {
			return nil, err
		}
		return nil, fn(msg.Context(), e)
	}
}

// decode is apart so that its &e, which escapes into the codec, does not make
// the in-process path allocate an E.
func decode[E any](msg *message.Message, name string, codec handlers.Codec) (E, error) {
	var e E
	payload, err := Payload(msg)
	if err != nil {
		return e, &handlers.DecodeError{Event: name, Reason: "cannot encode in-process value", Err: err}
	}
	if err := codec.Unmarshal(payload, &e); err != nil {
		return e, &handlers.DecodeError{Event: name, Reason: "malformed payload " + Quote(string(payload)), Err: err}
	}
	return e, nil
}
