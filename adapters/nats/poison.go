package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldbus/herald/internal/adapterkit"
	"github.com/heraldbus/herald/transport"
)

// The transport keeps the bus's poison records (it is a
// transport.PoisonStore) in the stream StreamName+"_POISON", each on
// "<SubjectPrefix>_poison.<handler token>.<record ID>" with the record ID as
// Nats-Msg-Id. The handler token is the handler name made a single subject
// token (see token). Records live until deleted, or PoisonMaxAge.
//
// A record's body is its JSON without the payload, a line feed, then the
// event's payload as it is (header Herald-Poison-Format: json+payload): JSON
// has no raw line break (stacks and errors keep theirs, escaped), and the
// payload is not base64-encoded. A record larger than the server's
// max_payload (an event near the limit: the record adds its error, stack and
// metadata) is split: the first part on the record's subject, with header
// Herald-Poison-Parts: n, and parts 1 to n-1 on "<record subject>.<i>", which
// the record filters ("<prefix>_poison.*.*") never match. A body without the
// format header is the whole record as JSON.

const (
	poisonFormatKey = "Herald-Poison-Format" // marks the body layout
	poisonFormat    = "json+payload"
	poisonPartsKey  = "Herald-Poison-Parts" // how many messages hold the body, if more than one
	maxPoisonParts  = 64
)

var _ transport.PoisonStore = (*Transport)(nil)

// PutPoison stores rec and returns nil once the stream has acknowledged it
// (every part of it). rec.ID must be a single subject token (the bus's IDs
// are). A record too large for the server's max_payload is stored in parts;
// beyond 64 parts PutPoison fails with an error wrapping [transport.ErrTooLarge], and
// the bus nacks the event.
func (t *Transport) PutPoison(ctx context.Context, rec transport.PoisonRecord) error {
	if err := t.poisonReady(ctx); err != nil {
		return err
	}
	if err := validToken(rec.ID); err != nil {
		return fmt.Errorf("herald/nats: poison record ID: %w", err)
	}
	body, err := adapterkit.EncodePoison(rec)
	if err != nil {
		return fmt.Errorf("herald/nats: encode poison record %s: %w", rec.ID, err)
	}
	subject := t.poisonSubject(rec.Handler, rec.ID)
	// Room for the body in one message: max_payload less the headers.
	room := len(body)
	if limit := int(t.nc.MaxPayload()); limit > 0 {
		room = limit - 256
	}
	parts := (len(body) + room - 1) / room
	if parts > maxPoisonParts {
		return fmt.Errorf("%w: poison record %s is %d bytes, more than %d times the server's max_payload", transport.ErrTooLarge, rec.ID, len(body), maxPoisonParts)
	}
	ctx, cancel := t.requestCtx(ctx)
	defer cancel()
	// A missing poison stream (a server with memory storage restarted) is
	// prepared again, and the record stored then.
	return t.withStreams(ctx, func() error {
		// The extra parts first: a record is listed only once it is whole.
		for i := parts - 1; i >= 1; i-- {
			m := &nats.Msg{
				Subject: subject + "." + strconv.Itoa(i),
				Header:  nats.Header{jetstream.MsgIDHeader: []string{rec.ID + "-" + strconv.Itoa(i)}},
				Data:    body[i*room : min((i+1)*room, len(body))],
			}
			if _, err := t.js.PublishMsg(ctx, m); err != nil {
				return fmt.Errorf("herald/nats: store part %d of poison record %s: %w", i, rec.ID, err)
			}
		}
		m := &nats.Msg{
			Subject: subject,
			Header:  nats.Header{jetstream.MsgIDHeader: []string{rec.ID}, poisonFormatKey: []string{poisonFormat}},
			Data:    body[:min(room, len(body))],
		}
		if parts > 1 {
			m.Header[poisonPartsKey] = []string{strconv.Itoa(parts)}
		}
		if _, err := t.js.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("herald/nats: store poison record %s: %w", rec.ID, err)
		}
		return nil
	})
}

func (t *Transport) poisonSubject(handler, id string) string {
	return t.poisonPrefix() + "." + token(handler, 40) + "." + id
}

// readPoison decodes the record whose first message is (subject, h, data),
// fetching its other parts if it has some.
func (t *Transport) readPoison(ctx context.Context, subject string, h nats.Header, data []byte) (transport.PoisonRecord, error) {
	var rec transport.PoisonRecord
	if h.Get(poisonFormatKey) != poisonFormat {
		err := json.Unmarshal(data, &rec)
		return rec, err
	}
	if parts, _ := strconv.Atoi(h.Get(poisonPartsKey)); parts > 1 {
		body := append([]byte(nil), data...)
		for i := 1; i < parts; i++ {
			m, err := t.poisonStream().GetLastMsgForSubject(ctx, subject+"."+strconv.Itoa(i))
			if err != nil {
				return rec, fmt.Errorf("part %d of %d: %w", i, parts, err)
			}
			body = append(body, m.Data...)
		}
		data = body
	}
	return adapterkit.DecodePoison(data)
}

// ListPoison returns a page of the records matching q, oldest first, and the
// cursor of the next page ("" after the last). The cursor is a stream
// sequence. Each page is one short-lived ephemeral consumer and one fetch,
// bounded by RequestTimeout (when ctx has no deadline); q.Limit defaults to
// 100 and is capped at 1000.
func (t *Transport) ListPoison(ctx context.Context, q transport.PoisonQuery) ([]transport.PoisonRecord, string, error) {
	if err := t.poisonReady(ctx); err != nil {
		return nil, "", err
	}
	after, limit, err := adapterkit.PoisonPage("nats", q)
	if err != nil {
		return nil, "", err
	}
	filter := t.poisonPrefix() + ".*.*"
	if q.Handler != "" {
		filter = t.poisonPrefix() + "." + token(q.Handler, 40) + ".*"
	}
	ctx, cancel := t.requestCtx(ctx)
	defer cancel()
	cc := jetstream.ConsumerConfig{
		FilterSubject:     filter,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
		Replicas:          1,
	}
	if after > 0 {
		cc.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cc.OptStartSeq = uint64(after) + 1
	}
	var cons jetstream.Consumer
	err = t.withStreams(ctx, func() error {
		var err error
		cons, err = t.poisonStream().CreateConsumer(ctx, cc)
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("herald/nats: list poison records: %w", err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), t.cfg.RequestTimeout)
		defer dcancel()
		_ = t.poisonStream().DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	var recs []transport.PoisonRecord
	if cons.CachedInfo().NumPending == 0 {
		return nil, "", nil
	}
	b, err := cons.FetchNoWait(limit)
	if err != nil {
		return nil, "", fmt.Errorf("herald/nats: list poison records: %w", err)
	}
	var last, pending uint64
	for m := range b.Messages() {
		md, err := m.Metadata()
		if err != nil {
			return nil, "", fmt.Errorf("herald/nats: list poison records: %w", err)
		}
		last, pending = md.Sequence.Stream, md.NumPending
		rec, err := t.readPoison(ctx, m.Subject(), m.Headers(), m.Data())
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, "", fmt.Errorf("herald/nats: poison record on %s: %w", m.Subject(), err)
		}
		if (q.Handler == "" || rec.Handler == q.Handler) && (q.Event == "" || rec.Event.Name == q.Event) {
			recs = append(recs, rec)
		}
	}
	if err := b.Error(); err != nil {
		return nil, "", fmt.Errorf("herald/nats: list poison records: %w", err)
	}
	if pending == 0 || last == 0 {
		return recs, "", nil
	}
	return recs, strconv.FormatUint(last, 10), nil
}

// isNotFound reports whether err says a message is not there (deleted by
// another caller meanwhile): jetstream.ErrMsgNotFound, or the server's
// "message delete failed: no message found" API error (10057) that DeleteMsg
// returns.
func isNotFound(err error) bool {
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeMessageNotFound {
		return true
	}
	// DeleteMsg wraps the server's error in its own, without the API error
	// in the chain: only its text tells.
	return err != nil && strings.Contains(err.Error(), "err_code=10057") && strings.Contains(err.Error(), "no message found")
}

// GetPoison returns the record with id; found is false if there is none.
func (t *Transport) GetPoison(ctx context.Context, id string) (transport.PoisonRecord, bool, error) {
	ctx, cancel := t.requestCtx(ctx)
	defer cancel()
	m, err := t.poisonMsg(ctx, id)
	if err != nil || m == nil {
		return transport.PoisonRecord{}, false, err
	}
	rec, err := t.readPoison(ctx, m.Subject, m.Header, m.Data)
	if isNotFound(err) {
		return rec, false, nil // deleted meanwhile
	}
	if err != nil {
		return rec, false, fmt.Errorf("herald/nats: poison record %s: %w", id, err)
	}
	return rec, true, nil
}

// DeletePoison removes the record with id (and its parts); found is false if
// there was none.
func (t *Transport) DeletePoison(ctx context.Context, id string) (bool, error) {
	ctx, cancel := t.requestCtx(ctx)
	defer cancel()
	m, err := t.poisonMsg(ctx, id)
	if err != nil || m == nil {
		return false, err
	}
	if err := t.poisonStream().DeleteMsg(ctx, m.Sequence); err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("herald/nats: delete poison record %s: %w", id, err)
	}
	parts, _ := strconv.Atoi(m.Header.Get(poisonPartsKey))
	for i := 1; i < parts; i++ {
		p, err := t.poisonStream().GetLastMsgForSubject(ctx, m.Subject+"."+strconv.Itoa(i))
		if err == nil {
			err = t.poisonStream().DeleteMsg(ctx, p.Sequence)
		}
		if err != nil && !isNotFound(err) {
			return true, fmt.Errorf("herald/nats: deleted poison record %s but not its part %d: %w", id, i, err)
		}
	}
	return true, nil
}

// poisonMsg returns the first message of record id, or nil.
func (t *Transport) poisonMsg(ctx context.Context, id string) (*jetstream.RawStreamMsg, error) {
	if err := t.poisonReady(ctx); err != nil {
		return nil, err
	}
	if validToken(id) != nil {
		return nil, nil // no record can have this ID
	}
	var m *jetstream.RawStreamMsg
	err := t.withStreams(ctx, func() error {
		var err error
		m, err = t.poisonStream().GetLastMsgForSubject(ctx, t.poisonPrefix()+".*."+id)
		return err
	})
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("herald/nats: get poison record %s: %w", id, err)
	}
	return m, nil
}

func (t *Transport) poisonReady(ctx context.Context) error {
	if t.isClosed() {
		return transport.ErrClosed
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
