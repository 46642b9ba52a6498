package handlers

import (
	"context"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Metadata keys Herald sets on every message it publishes. On NATS they are the
// header names, so a publisher in another language sets them to be understood.
// KeyID and KeyEvent are required on the wire; the others are optional.
const (
	KeyID            = "Herald-Id"             // unique event ID; also the NATS Nats-Msg-Id
	KeyEvent         = "Herald-Event"          // event name, e.g. "orders.OrderPlaced"
	KeyCorrelationID = "Herald-Correlation-Id" // ID of the event that started the chain
	KeyCausationID   = "Herald-Causation-Id"   // ID of the event whose handler published this one
	KeyPublishedAt   = "Herald-Published-At"   // RFC 3339 with nanoseconds, UTC
	KeyOrderingKey   = "Herald-Ordering-Key"   // optional ordering key
	KeyContentType   = "Content-Type"          // codec content type, e.g. "application/json"

	// KeyDeliveryCount is set by a transport, not a publisher: how many times
	// the message was delivered to this handler (1 the first time). The bus
	// uses it as the attempt number.
	KeyDeliveryCount = "Herald-Delivery-Count"
)

// Metadata describes one delivery of an event to one handler.
type Metadata struct {
	ID            string    // event ID, the same for every handler and every attempt
	Name          string    // event name
	CorrelationID string    // the root event's ID; equal to ID for a root event
	CausationID   string    // ID of the event being handled when this one was published; "" for a root event
	OrderingKey   string    // ordering key given at publish, if any
	Attempt       int       // 1 for the first delivery to this handler, 2 for the first retry, ...
	PublishedAt   time.Time // when Publish was called
	Handler       string    // name of the handler receiving the event
}

type deliveryKey struct{}

// delivery is one event handed to one handler. It is the message, its context
// and its metadata in one allocation: the context's Value lookup returns it.
type delivery struct {
	msg    message.Message
	parent context.Context
	meta   Metadata
	value  any   // the typed event when it never left the process, else nil
	codec  Codec // encodes value when a payload is needed
	err    error // why the message's metadata is unusable, if it is
}

func (d *delivery) Deadline() (time.Time, bool) { return d.parent.Deadline() }
func (d *delivery) Done() <-chan struct{}       { return d.parent.Done() }
func (d *delivery) Err() error                  { return d.parent.Err() }
func (d *delivery) Value(key any) any {
	if key == (deliveryKey{}) {
		return d
	}
	return d.parent.Value(key)
}

// NewMessage returns a message for one in-process delivery of value: its context
// is parent carrying meta, and its payload is payload (nil if the event was never
// encoded; [Payload] encodes it with codec on demand). md becomes the message's
// metadata and must not be shared with another message; nil gives an empty map.
func NewMessage(parent context.Context, meta Metadata, value any, payload []byte, md message.Metadata, codec Codec) *message.Message {
	if md == nil {
		md = make(message.Metadata, 2)
	}
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
// [*DecodeError].
func Bind(msg *message.Message, handler string, attempt int) {
	d := &delivery{parent: msg.Context()}
	d.meta, d.err = ParseMetadata(msg.Metadata)
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
func ParseMetadata(md message.Metadata) (Metadata, error) {
	m := Metadata{
		ID:            md.Get(KeyID),
		Name:          md.Get(KeyEvent),
		CorrelationID: md.Get(KeyCorrelationID),
		CausationID:   md.Get(KeyCausationID),
		OrderingKey:   md.Get(KeyOrderingKey),
	}
	var err error
	if at := md.Get(KeyPublishedAt); at != "" {
		t, perr := time.Parse(time.RFC3339Nano, at)
		if perr != nil {
			err = &DecodeError{Reason: "malformed " + KeyPublishedAt + " " + quote(at), Err: perr}
		}
		m.PublishedAt = t
	}
	switch {
	case m.ID == "":
		err = &DecodeError{Reason: "message has no " + KeyID + " metadata (not published by Herald?)"}
	case m.Name == "":
		err = &DecodeError{Reason: "message has no " + KeyEvent + " metadata (not published by Herald?)"}
	}
	return m, err
}

// SetMetadata writes m's wire fields (everything but Attempt and Handler) into md.
func SetMetadata(md message.Metadata, m Metadata) {
	md[KeyID] = m.ID
	md[KeyEvent] = m.Name
	if m.CorrelationID != "" {
		md[KeyCorrelationID] = m.CorrelationID
	}
	if m.CausationID != "" {
		md[KeyCausationID] = m.CausationID
	}
	if m.OrderingKey != "" {
		md[KeyOrderingKey] = m.OrderingKey
	}
	if !m.PublishedAt.IsZero() {
		md[KeyPublishedAt] = m.PublishedAt.UTC().Format(time.RFC3339Nano)
	}
}

// quote renders the start of untrusted bytes for an error message: at most 64
// bytes, cut at a character boundary, Go-quoted so that control characters,
// newlines and invalid UTF-8 cannot corrupt logs or forge log lines.
func quote(s string) string {
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

// FromContext returns the metadata of the event being handled, if ctx is (or
// derives from) a handler's context. A Publish with such a ctx makes the new
// event a consequence of this one: same correlation ID, causation ID = this ID.
func FromContext(ctx context.Context) (Metadata, bool) {
	if ctx == nil {
		return Metadata{}, false
	}
	if d, ok := ctx.Value(deliveryKey{}).(*delivery); ok {
		return d.meta, true
	}
	return Metadata{}, false
}

// MessageMetadata returns the metadata bound to msg by [NewMessage] or [Bind],
// or nil. Middleware may update Attempt; the other fields are read-only.
func MessageMetadata(msg *message.Message) *Metadata {
	if d := deliveryOf(msg); d != nil {
		return &d.meta
	}
	return nil
}

func deliveryOf(msg *message.Message) *delivery {
	d, _ := msg.Context().Value(deliveryKey{}).(*delivery)
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

type inFlightKey struct{}

// WithInFlight returns a ctx that asks a transport's Subscribe to hand out up
// to n messages on its channel without waiting for each one's Ack or Nack:
// for a receiver that settles messages out of order (the bus's ordering by
// key). Transports that cannot, ignore it and keep watermill's one at a time.
func WithInFlight(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, inFlightKey{}, n)
}

// InFlight returns the n given to [WithInFlight] in ctx, or 1.
func InFlight(ctx context.Context) int {
	if n, ok := ctx.Value(inFlightKey{}).(int); ok && n > 1 {
		return n
	}
	return 1
}
