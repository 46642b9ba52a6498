// Package event is the bus's plumbing between typed handlers and watermill
// messages: the delivery a handler's context carries, the wire metadata's
// parsing, event names, the JSON size plan and event IDs.
package event

import (
	"context"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/ctxkey"
	"github.com/heraldbus/herald/transport"
)

// delivery is one event handed to one handler. It is the message, its context
// and its metadata in one allocation: the context's Value lookup returns it.
type delivery struct {
	msg    message.Message
	parent context.Context
	meta   handlers.Metadata
	value  any            // the typed event when it never left the process, else nil
	codec  handlers.Codec // encodes value when a payload is needed
	err    error          // why the message's metadata is unusable, if it is
	// poisoned is set by the Poison middleware once the delivery's record
	// is stored: observers outside it read it ([Poisoned]).
	poisoned bool
	// deliveries is how many times the transport delivered the message to
	// this handler, 1 the first time, when the transport says; 0 otherwise.
	deliveries int
	// failure is the error message of the delivery's last failed attempt,
	// recorded by delivery tracking ([SetFailure]).
	failure string
}

func (d *delivery) Deadline() (time.Time, bool) { return d.parent.Deadline() }
func (d *delivery) Done() <-chan struct{}       { return d.parent.Done() }
func (d *delivery) Err() error                  { return d.parent.Err() }
func (d *delivery) Value(key any) any {
	// A type check, not key == ctxkey.Delivery{}: comparing interfaces
	// calls the runtime's efaceeq, and every middleware looks the delivery up.
	if _, ok := key.(ctxkey.Delivery); ok {
		return d
	}
	return d.parent.Value(key)
}

// HandlerMetadata is what handlers.FromContext returns.
func (d *delivery) HandlerMetadata() handlers.Metadata { return d.meta }

// NewMessage returns a message for one in-process delivery of value: its context
// is parent carrying meta, and its payload is payload (nil if the event was never
// encoded; [Payload] encodes it with codec on demand). md becomes the message's
// metadata and must not be shared with another message; nil gives an empty map.
func NewMessage(parent context.Context, meta handlers.Metadata, value any, payload []byte, md message.Metadata, codec handlers.Codec) *message.Message {
	if md == nil {
		md = make(message.Metadata, 2)
	}
	return NewSharedMessage(parent, meta, value, payload, md, codec)
}

// NewSharedMessage is [NewMessage] for a chain that never writes a message's
// Metadata: md becomes the message's metadata as it is, and may be nil or
// shared with the other handlers' messages of the event.
func NewSharedMessage(parent context.Context, meta handlers.Metadata, value any, payload []byte, md message.Metadata, codec handlers.Codec) *message.Message {
	d := &delivery{parent: parent, meta: meta, value: value, codec: codec}
	d.msg.UUID = meta.ID
	d.msg.Payload = payload
	d.msg.Metadata = md
	d.msg.SetContext(d)
	return &d.msg
}

// Bind attaches Herald metadata to a message that came from a transport: it
// reads the Key* entries of msg.Metadata, sets Handler and Attempt, and replaces
// the message's context with one that carries them. A message without KeyID or
// KeyEvent is still bound; the handler built by [New] then refuses it with a
// [*handlers.DecodeError].
func Bind(msg *message.Message, handler string, attempt int) {
	d := &delivery{parent: msg.Context()}
	d.meta.Event, d.err = ParseMetadata(msg.Metadata)
	if d.meta.ID == "" {
		d.meta.ID = msg.UUID
	}
	d.meta.Handler = handler
	d.meta.Attempt = attempt
	msg.SetContext(d)
}

// ParseMetadata reads the Key* entries of md. It returns a non-nil error, and
// the fields it could read, when KeyID or KeyEvent is missing or KeyPublishedAt
// is malformed.
func ParseMetadata(md message.Metadata) (transport.Event, error) {
	m := transport.Event{
		ID:            md.Get(transport.KeyID),
		Name:          md.Get(transport.KeyEvent),
		CorrelationID: md.Get(transport.KeyCorrelationID),
		CausationID:   md.Get(transport.KeyCausationID),
		OrderingKey:   md.Get(transport.KeyOrderingKey),
	}
	if m.CorrelationID == "" {
		m.CorrelationID = m.ID
	}
	var err error
	if at := md.Get(transport.KeyPublishedAt); at != "" {
		t, perr := time.Parse(time.RFC3339Nano, at)
		if perr != nil {
			err = &handlers.DecodeError{Reason: "malformed " + transport.KeyPublishedAt + " " + Quote(at), Err: perr}
		}
		m.PublishedAt = t
	}
	switch {
	case m.ID == "":
		err = &handlers.DecodeError{Reason: "message has no " + transport.KeyID + " metadata (not published by Herald?)"}
	case m.Name == "":
		err = &handlers.DecodeError{Reason: "message has no " + transport.KeyEvent + " metadata (not published by Herald?)"}
	}
	return m, err
}

// SetMetadata writes m into md. The correlation ID is left out when it equals
// the ID (a root event), as [ParseMetadata] restores it.
func SetMetadata(md message.Metadata, m transport.Event) {
	md[transport.KeyID] = m.ID
	md[transport.KeyEvent] = m.Name
	if m.CorrelationID != "" && m.CorrelationID != m.ID {
		md[transport.KeyCorrelationID] = m.CorrelationID
	}
	if m.CausationID != "" {
		md[transport.KeyCausationID] = m.CausationID
	}
	if m.OrderingKey != "" {
		md[transport.KeyOrderingKey] = m.OrderingKey
	}
	if !m.PublishedAt.IsZero() {
		md[transport.KeyPublishedAt] = m.PublishedAt.UTC().Format(time.RFC3339Nano)
	}
}

// Quote renders the start of untrusted bytes for an error message: at most 64
// bytes, cut at a character boundary, Go-quoted so that control characters,
// newlines and invalid UTF-8 cannot corrupt logs or forge log lines.
func Quote(s string) string {
	const limit = 64
	if len(s) <= limit {
		return strconv.Quote(s)
	}
	cut := limit
	for cut > limit-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}

// MessageMetadata returns the metadata bound to msg by [NewMessage] or [Bind],
// or nil. Middleware may update Attempt; the other fields are read-only.
func MessageMetadata(msg *message.Message) *handlers.Metadata {
	if d := deliveryOf(msg); d != nil {
		return &d.meta
	}
	return nil
}

// Deliveries returns how many times the transport delivered msg to its
// handler, 1 the first time, as recorded by [SetDeliveries]; 0 when the
// transport does not say. Retry counts attempts across redeliveries with it.
func Deliveries(msg *message.Message) int {
	if d := deliveryOf(msg); d != nil {
		return d.deliveries
	}
	return 0
}

// SetDeliveries records n for [Deliveries] on a message bound by
// [NewMessage] or [Bind]; it does nothing on another message.
func SetDeliveries(msg *message.Message, n int) {
	if d := deliveryOf(msg); d != nil {
		d.deliveries = n
	}
}

func deliveryOf(msg *message.Message) *delivery {
	ctx := msg.Context()
	if d, ok := ctx.(*delivery); ok {
		return d // the context NewMessage or Bind set, unwrapped: no Value call
	}
	d, _ := ctx.Value(ctxkey.Delivery{}).(*delivery)
	return d
}

// Stopping reports whether the handler msg was delivered to is stopping: the
// bus or the subscription is shutting down and cancelled its workers. A
// deadline or cancel that middleware put on the message's own context does not
// count. Middleware uses it to tell an interrupted delivery (nack it, it comes
// back) from a failed one.
func Stopping(msg *message.Message) bool {
	if d := deliveryOf(msg); d != nil {
		return d.parent.Err() != nil
	}
	return msg.Context().Err() != nil
}

// Payload returns msg's encoded payload. An in-process delivery carries the
// typed value and no payload; Payload encodes it once with the bus's codec and
// stores it in msg.Payload.
func Payload(msg *message.Message) ([]byte, error) {
	if len(msg.Payload) > 0 {
		return msg.Payload, nil
	}
	d := deliveryOf(msg)
	if d == nil || d.value == nil || d.codec == nil {
		return msg.Payload, nil
	}
	b, err := d.codec.Marshal(d.value)
	if err != nil {
		return nil, err
	}
	msg.Payload = b
	return b, nil
}
