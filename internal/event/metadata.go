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
// What every delivery of one event shares (the event's metadata and value)
// and what every delivery to one handler shares (its context, name and codec)
// it points to instead of copying, so that it stays small: the bus makes one
// per handler per event, and the garbage collector's work follows their bytes.
type delivery struct {
	msg message.Message
	sub *Binding // the handler's: read-only
	ev  *Shared  // the event's, shared by its deliveries: read-only
	ext *extra   // nil until the delivery's metadata is written or a failure recorded
	// attempt is the handler's attempt (handlers.Metadata.Attempt) while ext
	// holds no metadata of its own.
	attempt int
	// deliveries is how many times the transport delivered the message to
	// this handler, 1 the first time, when the transport says; 0 otherwise.
	deliveries int
	// poisoned is set by the Poison middleware once the delivery's record
	// is stored: observers outside it read it ([Poisoned]).
	poisoned bool
}

// extra is the part of a delivery that the common path never needs.
type extra struct {
	// meta, once own is set (by [MessageMetadata], which hands out a
	// writable pointer), is the delivery's metadata, in place of ev, sub's
	// Handler and attempt.
	meta handlers.Metadata
	own  bool
	// failure is the error message of the delivery's last failed attempt,
	// recorded by delivery tracking ([SetFailure]).
	failure string
}

// Shared is what every in-process delivery of one event shares: its metadata
// and its typed value. It must not change once a message points to it.
type Shared struct {
	Event transport.Event
	Value any   // the typed event when it never left the process, else nil
	err   error // why the message's metadata is unusable, if it is ([Bind])
}

// Binding is what every delivery to one handler shares: the context its
// deliveries derive from, its name, and the codec that encodes an in-process
// value when a payload is needed. It must not change once a message points to
// it.
type Binding struct {
	Parent  context.Context
	Handler string
	Codec   handlers.Codec
}

func (d *delivery) Deadline() (time.Time, bool) { return d.sub.Parent.Deadline() }
func (d *delivery) Done() <-chan struct{}       { return d.sub.Parent.Done() }
func (d *delivery) Err() error                  { return d.sub.Parent.Err() }
func (d *delivery) Value(key any) any {
	// A type check, not key == ctxkey.Delivery{}: comparing interfaces
	// calls the runtime's efaceeq, and every middleware looks the delivery up.
	if _, ok := key.(ctxkey.Delivery); ok {
		return d
	}
	return d.sub.Parent.Value(key)
}

// HandlerMetadata is what handlers.FromContext returns.
func (d *delivery) HandlerMetadata() handlers.Metadata { return d.meta() }

// meta returns a copy of the delivery's metadata.
func (d *delivery) meta() handlers.Metadata {
	if d.ext != nil && d.ext.own {
		return d.ext.meta
	}
	return handlers.Metadata{Event: d.ev.Event, Attempt: d.attempt, Handler: d.sub.Handler}
}

// event returns the delivery's event metadata, which its handlers.Metadata
// embeds.
func (d *delivery) event() *transport.Event {
	if d.ext != nil && d.ext.own {
		return &d.ext.meta.Event
	}
	return &d.ev.Event
}

// own makes the delivery's metadata its own, writable copy and returns it.
func (d *delivery) own() *handlers.Metadata {
	if d.ext == nil {
		d.ext = &extra{}
	}
	if !d.ext.own {
		d.ext.meta = d.meta()
		d.ext.own = true
	}
	return &d.ext.meta
}

// NewMessage returns a message for one in-process delivery of value: its context
// is parent carrying meta, and its payload is payload (nil if the event was never
// encoded; [Payload] encodes it with codec on demand). md becomes the message's
// metadata and must not be shared with another message; nil gives an empty map.
// It allocates what [NewDelivery] shares; the bus uses NewDelivery.
func NewMessage(parent context.Context, meta handlers.Metadata, value any, payload []byte, md message.Metadata, codec handlers.Codec) *message.Message {
	if md == nil {
		md = make(message.Metadata, 2)
	}
	sub := &Binding{Parent: parent, Handler: meta.Handler, Codec: codec}
	ev := &Shared{Event: meta.Event, Value: value}
	return NewDelivery(sub, ev, meta.Attempt, 0, payload, md)
}

// NewDelivery returns a message for one in-process delivery of ev to the
// handler sub describes: attempt is its handlers.Metadata.Attempt and
// deliveries what [Deliveries] reports. Its payload is payload (nil if the
// event was never encoded; [Payload] encodes ev.Value with sub.Codec on
// demand), its Metadata md as it is: a map no other message shares when the
// chain may write it, else possibly nil or shared. sub and ev are shared,
// not copied: a delivery's metadata written through [MessageMetadata] or
// [SetAttempt] changes that delivery alone.
func NewDelivery(sub *Binding, ev *Shared, attempt, deliveries int, payload []byte, md message.Metadata) *message.Message {
	d := &delivery{sub: sub, ev: ev, attempt: attempt, deliveries: deliveries}
	d.msg.UUID = ev.Event.ID
	d.msg.Payload = payload
	d.msg.Metadata = md
	d.msg.SetContext(d)
	return &d.msg
}

// bound is a delivery of a message that came from a transport, with the
// event metadata and binding it does not share.
type bound struct {
	d   delivery
	ev  Shared
	sub Binding
}

// Bind attaches Herald metadata to a message that came from a transport: it
// reads the Key* entries of msg.Metadata, sets Handler and Attempt, and replaces
// the message's context with one that carries them. A message without KeyID or
// KeyEvent is still bound; the handler built by [New] then refuses it with a
// [*handlers.DecodeError].
func Bind(msg *message.Message, handler string, attempt int) {
	b := &bound{}
	b.sub = Binding{Parent: msg.Context(), Handler: handler}
	b.ev.Event, b.ev.err = ParseMetadata(msg.Metadata)
	if b.ev.Event.ID == "" {
		b.ev.Event.ID = msg.UUID
	}
	b.d.sub, b.d.ev, b.d.attempt = &b.sub, &b.ev, attempt
	msg.SetContext(&b.d)
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

// MessageMetadata returns the metadata bound to msg by [NewMessage],
// [NewDelivery] or [Bind], or nil. Middleware may update Attempt; the other
// fields are read-only. The first call gives the delivery a copy of its own
// (an allocation): on the common path, read with [Metadata], [Attempt] and
// [EnsureCorrelationID], and write the attempt with [SetAttempt].
func MessageMetadata(msg *message.Message) *handlers.Metadata {
	if d := deliveryOf(msg); d != nil {
		return d.own()
	}
	return nil
}

// Metadata returns a copy of the metadata bound to msg, and false when msg
// is not bound.
func Metadata(msg *message.Message) (handlers.Metadata, bool) {
	if d := deliveryOf(msg); d != nil {
		return d.meta(), true
	}
	return handlers.Metadata{}, false
}

// Attempt returns the attempt of the delivery bound to msg
// (handlers.Metadata.Attempt), or 0.
func Attempt(msg *message.Message) int {
	d := deliveryOf(msg)
	switch {
	case d == nil:
		return 0
	case d.ext != nil && d.ext.own:
		return d.ext.meta.Attempt
	}
	return d.attempt
}

// SetAttempt sets the attempt of the delivery bound to msg; it does nothing
// on another message.
func SetAttempt(msg *message.Message, n int) {
	d := deliveryOf(msg)
	switch {
	case d == nil:
	case d.ext != nil && d.ext.own:
		d.ext.meta.Attempt = n
	default:
		d.attempt = n
	}
}

// EnsureCorrelationID gives the delivery bound to msg its ID as its
// correlation ID when it has none (an event from a foreign publisher starts a
// chain of its own), and returns its ID and correlation ID; "", "" for a
// message that is not bound.
func EnsureCorrelationID(msg *message.Message) (id, correlationID string) {
	d := deliveryOf(msg)
	if d == nil {
		return "", ""
	}
	ev := d.event()
	if ev.CorrelationID == "" {
		ev = &d.own().Event // ev may be shared: write a copy of its own
		ev.CorrelationID = ev.ID
	}
	return ev.ID, ev.CorrelationID
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
		return d.sub.Parent.Err() != nil
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
	if d == nil || d.ev.Value == nil || d.sub.Codec == nil {
		return msg.Payload, nil
	}
	b, err := d.sub.Codec.Marshal(d.ev.Value)
	if err != nil {
		return nil, err
	}
	msg.Payload = b
	return b, nil
}
