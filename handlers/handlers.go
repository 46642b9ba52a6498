package handlers

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/heraldbus/herald/internal/ctxkey"
	"github.com/heraldbus/herald/transport"
)

// Metadata describes one delivery of an event to one handler: the event's wire
// metadata (ID, name, correlation and causation IDs, ordering key, publish
// time), which attempt this is and which handler receives it.
type Metadata struct {
	transport.Event
	Attempt int    // 1 for the first delivery to this handler, 2 for the first retry, ...
	Handler string // name of the handler receiving the event
}

// FromContext returns the metadata of the event being handled, if ctx is (or
// derives from) a handler's context. A bus.Publish with such a ctx makes the
// new event a consequence of this one: same correlation ID, causation ID =
// this event's ID.
func FromContext(ctx context.Context) (Metadata, bool) {
	if ctx == nil {
		return Metadata{}, false
	}
	if c, ok := ctx.Value(ctxkey.Delivery{}).(carrier); ok {
		return c.HandlerMetadata(), true
	}
	return Metadata{}, false
}

// carrier is the handler's delivery as the bus puts it in the context.
type carrier interface{ HandlerMetadata() Metadata }

// Namer is implemented by event types that choose their own name. EventName is
// called once per type, on the zero value, and must return the same name for
// every value. The name must be a valid NATS subject (dot-separated tokens, no
// spaces or wildcards) and must not start with '_'.
type Namer interface {
	EventName() string
}

// Codec encodes events to bytes and back (bus.WithCodec). Implementations must
// be safe for concurrent use.
type Codec interface {
	// ContentType names the format, e.g. "application/json"; it travels in
	// the transport.KeyContentType metadata.
	ContentType() string
	// Marshal encodes v.
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into v, a non-nil pointer.
	Unmarshal(data []byte, v any) error
}

// JSON is the default [Codec]: encoding/json.
type JSON struct{}

// ContentType returns "application/json".
func (JSON) ContentType() string { return "application/json" }

// Marshal encodes v with json.Marshal. It refuses, with an error wrapping
// transport.ErrInvalidEvent, an encoding that json.Unmarshal would refuse for
// nesting arrays and objects more than 10000 levels deep. The check scans the
// encoding only when it is long enough to nest that deep.
func (JSON) Marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if len(b) > 2*maxDepth && tooDeep(b) {
		return nil, errTooDeep{}
	}
	return b, nil
}

// maxDepth is how deep encoding/json's decoder lets arrays and objects nest.
const maxDepth = 10000

// errTooDeep is JSON.Marshal's error for an encoding nested deeper than
// maxDepth.
type errTooDeep struct{}

func (errTooDeep) Error() string {
	return fmt.Sprintf("json: arrays and objects nested more than %d levels deep, which json.Unmarshal refuses", maxDepth)
}

func (errTooDeep) Is(target error) bool { return target == transport.ErrInvalidEvent }

// tooDeep reports whether b, a valid JSON text, nests arrays and objects more
// than maxDepth levels deep.
func tooDeep(b []byte) bool {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '[', '{':
			if depth++; depth > maxDepth {
				return true
			}
		case ']', '}':
			depth--
		}
	}
	return false
}

// Unmarshal decodes with json.Unmarshal.
func (JSON) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
