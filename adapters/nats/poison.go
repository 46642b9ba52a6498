package nats

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldbus/herald/middleware"
)

// The transport keeps the bus's poison records (it is a
// middleware.PoisonStore) in the stream StreamName+"_POISON": one message per
// record, on "<SubjectPrefix>_poison.<handler token>.<record ID>", whose
// Nats-Msg-Id is the record ID. The handler token is the handler name made a
// single subject token (see token). Records live until deleted, or
// PoisonMaxAge.
//
// The body is the record's JSON without its payload, a line feed, then the
// event's payload as it is (header Herald-Poison-Format: json+payload): JSON
// has no raw line break (stacks and errors keep theirs, escaped), and the
// payload is not base64-encoded, so an event that fits the server's
// max_payload has a record that fits too. A body without that header is the
// whole record as JSON.

// poisonFormatKey and poisonFormat mark the body layout.
const (
	poisonFormatKey = "Herald-Poison-Format"
	poisonFormat    = "json+payload"
)

var _ middleware.PoisonStore = (*Transport)(nil)

// listBatch is how many records ListPoison fetches per request.
const listBatch = 256

// PutPoison stores rec and returns nil once the stream has acknowledged it.
// rec.ID must be a single subject token (the bus's IDs are). A record too
// large for the server's max_payload loses its stack, then the end of its
// error; if it still does not fit, PutPoison fails (wrapping [ErrTooLarge])
// and the bus nacks the event.
func (t *Transport) PutPoison(ctx context.Context, rec middleware.PoisonRecord) error {
	if err := t.poisonReady(ctx); err != nil {
		return err
	}
	if err := validToken(rec.ID); err != nil {
		return fmt.Errorf("herald/nats: poison record ID: %v", err)
	}
	subject := t.poisonPrefix() + "." + token(rec.Handler, 40) + "." + rec.ID
	header := nats.Header{
		jetstream.MsgIDHeader: []string{rec.ID},
		poisonFormatKey:       []string{poisonFormat},
	}
	hsize := len("NATS/1.0\r\n\r\n") + len(jetstream.MsgIDHeader) + len(rec.ID) + len(poisonFormatKey) + len(poisonFormat) + 8
	limit := int(t.nc.MaxPayload())
	body, err := poisonBody(rec)
	if err != nil {
		return err
	}
	for _, shrink := range []func(*middleware.PoisonRecord) bool{
		func(r *middleware.PoisonRecord) bool {
			if r.Stack == "" {
				return false
			}
			r.Stack = "(stack dropped: the record was too large for the server's max_payload)"
			return true
		},
		func(r *middleware.PoisonRecord) bool {
			if len(r.Error) <= 1024 {
				return false
			}
			r.Error = r.Error[:1024] + "... (cut: the record was too large for the server's max_payload)"
			return true
		},
	} {
		if limit <= 0 || len(body)+hsize <= limit {
			break
		}
		if shrink(&rec) {
			if body, err = poisonBody(rec); err != nil {
				return err
			}
		}
	}
	if limit > 0 && len(body)+hsize > limit {
		return fmt.Errorf("%w: poison record %s is %d bytes, the server's max_payload is %d", ErrTooLarge, rec.ID, len(body)+hsize, limit)
	}
	ctx, cancel := t.requestCtx(ctx)
	defer cancel()
	if _, err := t.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Header: header, Data: body}); err != nil {
		return fmt.Errorf("herald/nats: store poison record %s: %w", rec.ID, err)
	}
	return nil
}

// poisonBody is the record's JSON without its payload, a line feed, and the
// payload.
func poisonBody(rec middleware.PoisonRecord) ([]byte, error) {
	payload := rec.Payload
	rec.Payload = nil
	js, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("herald/nats: encode poison record %s: %w", rec.ID, err)
	}
	body := make([]byte, 0, len(js)+1+len(payload))
	body = append(append(append(body, js...), '\n'), payload...)
	return body, nil
}

// parsePoison decodes a poison record message.
func parsePoison(h nats.Header, data []byte) (middleware.PoisonRecord, error) {
	var rec middleware.PoisonRecord
	if h.Get(poisonFormatKey) != poisonFormat {
		err := json.Unmarshal(data, &rec)
		return rec, err
	}
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		return rec, errors.New("no line feed after the record's JSON")
	}
	if err := json.Unmarshal(data[:i], &rec); err != nil {
		return rec, err
	}
	if len(data) > i+1 {
		rec.Payload = append([]byte(nil), data[i+1:]...)
	}
	return rec, nil
}

// ListPoison returns the records of handler ("" for every handler), oldest
// first. It reads them with a short-lived ephemeral consumer.
func (t *Transport) ListPoison(ctx context.Context, handler string) ([]middleware.PoisonRecord, error) {
	if err := t.poisonReady(ctx); err != nil {
		return nil, err
	}
	filter := t.poisonPrefix() + ".>"
	if handler != "" {
		filter = t.poisonPrefix() + "." + token(handler, 40) + ".*"
	}
	ctx, cancel := t.requestCtx(ctx)
	defer cancel()
	cons, err := t.poison.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject:     filter,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
		Replicas:          1,
	})
	if err != nil {
		return nil, fmt.Errorf("herald/nats: list poison records: %w", err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), t.cfg.RequestTimeout)
		defer dcancel()
		_ = t.poison.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	var recs []middleware.PoisonRecord
	pending := cons.CachedInfo().NumPending
	for pending > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b, err := cons.FetchNoWait(int(min(pending, listBatch)))
		if err != nil {
			return nil, fmt.Errorf("herald/nats: list poison records: %w", err)
		}
		n := 0
		for m := range b.Messages() {
			n++
			if md, err := m.Metadata(); err == nil {
				pending = md.NumPending
			}
			rec, err := parsePoison(m.Headers(), m.Data())
			if err != nil {
				return nil, fmt.Errorf("herald/nats: poison record on %s: %w", m.Subject(), err)
			}
			if handler == "" || rec.Handler == handler {
				recs = append(recs, rec)
			}
		}
		if err := b.Error(); err != nil {
			return nil, fmt.Errorf("herald/nats: list poison records: %w", err)
		}
		if n == 0 {
			break // deleted meanwhile
		}
	}
	return recs, nil
}

// GetPoison returns the record with id; found is false if there is none.
func (t *Transport) GetPoison(ctx context.Context, id string) (middleware.PoisonRecord, bool, error) {
	m, err := t.poisonMsg(ctx, id)
	if err != nil || m == nil {
		return middleware.PoisonRecord{}, false, err
	}
	rec, err := parsePoison(m.Header, m.Data)
	if err != nil {
		return rec, false, fmt.Errorf("herald/nats: poison record %s: %w", id, err)
	}
	return rec, true, nil
}

// DeletePoison removes the record with id; found is false if there was none.
func (t *Transport) DeletePoison(ctx context.Context, id string) (bool, error) {
	m, err := t.poisonMsg(ctx, id)
	if err != nil || m == nil {
		return false, err
	}
	ctx, cancel := t.requestCtx(ctx)
	defer cancel()
	if err := t.poison.DeleteMsg(ctx, m.Sequence); err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return false, nil
		}
		return false, fmt.Errorf("herald/nats: delete poison record %s: %w", id, err)
	}
	return true, nil
}

// poisonMsg returns the stream message of record id, or nil.
func (t *Transport) poisonMsg(ctx context.Context, id string) (*jetstream.RawStreamMsg, error) {
	if err := t.poisonReady(ctx); err != nil {
		return nil, err
	}
	if validToken(id) != nil {
		return nil, nil // no record can have this ID
	}
	ctx, cancel := t.requestCtx(ctx)
	defer cancel()
	m, err := t.poison.GetLastMsgForSubject(ctx, t.poisonPrefix()+".*."+id)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("herald/nats: get poison record %s: %w", id, err)
	}
	return m, nil
}

func (t *Transport) poisonReady(ctx context.Context) error {
	if t.isClosed() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return t.prepare(ctx)
}

// requestCtx bounds a request with ctx no deadline by RequestTimeout.
func (t *Transport) requestCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, t.cfg.RequestTimeout)
}
