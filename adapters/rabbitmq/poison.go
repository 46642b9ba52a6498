package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/internal/adapterkit"
	"github.com/heraldbus/herald/transport"
)

const (
	hdrPoisonOp      = "x-herald-op"
	hdrPoisonID      = "x-herald-id"
	hdrPoisonHandler = "x-herald-handler"
	hdrPoisonEvent   = "x-herald-event"
	hdrPoisonToken   = "x-herald-token"
	hdrStreamOffset  = "x-stream-offset"
)

// pentry is where the stream holds a live record.
type pentry = adapterkit.PoisonEntry[struct{}]

// poisonIndex is the in-memory index of the poison stream.
type poisonIndex struct {
	t *Transport

	mu      sync.Mutex
	started bool
	synced  chan struct{} // closed once a sync marker was applied: the index has caught up
	syncMu  sync.Mutex    // one first sync at a time
	index   adapterkit.PoisonIndex[struct{}]
	waiters map[string]chan bool
	cancel  context.CancelFunc
	done    chan struct{}
}

func newPoisonIndex(t *Transport) *poisonIndex {
	return &poisonIndex{t: t, waiters: map[string]chan bool{}, done: make(chan struct{}),
		synced: make(chan struct{})}
}

// start starts following the stream, once, and waits until the index has
// caught up with what the stream held at this call.
func (x *poisonIndex) start(ctx context.Context) error {
	if x.t.isClosed() {
		return transport.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := x.t.prepare(ctx); err != nil {
		return err
	}
	x.mu.Lock()
	if !x.started {
		x.started = true
		fctx, cancel := context.WithCancel(context.Background())
		x.cancel = cancel
		go x.follow(fctx)
	}
	x.mu.Unlock()
	select {
	case <-x.synced:
		return nil
	default:
	}
	x.syncMu.Lock()
	defer x.syncMu.Unlock()
	select {
	case <-x.synced:
		return nil
	default:
	}
	if _, err := x.write(ctx, "sync", "", "", "", nil); err != nil {
		return err // the next call syncs again
	}
	close(x.synced)
	return nil
}

func (x *poisonIndex) close() {
	x.mu.Lock()
	following := x.cancel != nil
	if following {
		x.cancel()
	}
	x.started = true // no follower after close
	x.mu.Unlock()
	if following {
		<-x.done
	}
}

// follow consumes the stream from the offset after the last one applied,
// opening a new channel whenever one is lost, until ctx ends.
func (x *poisonIndex) follow(ctx context.Context) {
	defer close(x.done)
	next := any("first")
	wait := x.t.cfg.ReconnectWait
	for ctx.Err() == nil {
		last, err := x.consume(ctx, next)
		if last >= 0 {
			next = last + 1
			wait = x.t.cfg.ReconnectWait
		}
		if ctx.Err() != nil {
			return
		}
		x.t.cfg.Logger.Warn("poison stream consumer lost; resuming", zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, x.t.cfg.MaxReconnectWait)
	}
}

// consume reads the stream from offset until the channel is lost or ctx
// ends; it returns the last offset applied (-1 if none).
func (x *poisonIndex) consume(ctx context.Context, offset any) (int64, error) {
	last := int64(-1)
	ch, err := x.t.link.channel(ctx)
	if err != nil {
		return last, err
	}
	defer func() { _ = ch.Close() }()
	if err := ch.Qos(500, 0, false); err != nil {
		return last, err
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	ds, err := ch.Consume(x.t.poisonName(), "", false, false, false, false, amqp.Table{"x-stream-offset": offset})
	if err != nil {
		return last, err
	}
	for {
		select {
		case d, ok := <-ds:
			if !ok {
				return last, errors.New("deliveries closed")
			}
			off, ok := d.Headers[hdrStreamOffset].(int64)
			if !ok {
				_ = d.Ack(false)
				continue
			}
			x.apply(off, d.Headers)
			last = off
			_ = d.Ack(false)
		case err := <-closed:
			return last, errOrNil(err)
		case <-ctx.Done():
			return last, ctx.Err()
		}
	}
}

func hdr(h amqp.Table, k string) string { s, _ := h[k].(string); return s }

// apply applies the operation at offset to the index and wakes its waiter.
func (x *poisonIndex) apply(offset int64, h amqp.Table) {
	x.mu.Lock()
	defer x.mu.Unlock()
	id := hdr(h, hdrPoisonID)
	result := false
	switch hdr(h, hdrPoisonOp) {
	case "put": // a replaced record: the newer one counts
		x.index.Put(id, pentry{Offset: offset, Handler: hdr(h, hdrPoisonHandler), Event: hdr(h, hdrPoisonEvent)})
		result = true
	case "delete":
		result = x.index.Delete(id)
	}
	if w, ok := x.waiters[hdr(h, hdrPoisonToken)]; ok {
		w <- result
		delete(x.waiters, hdr(h, hdrPoisonToken))
	}
}

// write appends an operation to the stream and waits until the index has
// applied it; the result is whether a delete found its record.
func (x *poisonIndex) write(ctx context.Context, op, id, handler, event string, body []byte) (bool, error) {
	token := randomID()
	w := make(chan bool, 1)
	x.mu.Lock()
	x.waiters[token] = w
	x.mu.Unlock()
	defer func() {
		x.mu.Lock()
		delete(x.waiters, token)
		x.mu.Unlock()
	}()
	pub := amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body, Headers: amqp.Table{
		hdrPoisonOp: op, hdrPoisonID: id, hdrPoisonHandler: handler, hdrPoisonEvent: event, hdrPoisonToken: token}}
	dc, err := x.t.pub.sendRaw(ctx, "", x.t.poisonName(), pub)
	if err != nil {
		return false, fmt.Errorf("herald/rabbitmq: poison %s %s: %w", op, id, x.t.closedOr(err))
	}
	ok, err := dc.WaitContext(ctx)
	switch {
	case err != nil:
		return false, fmt.Errorf("herald/rabbitmq: poison %s %s: waiting for the broker's confirm: %w", op, id, err)
	case !ok && x.t.isClosed():
		return false, fmt.Errorf("herald/rabbitmq: poison %s %s: %w", op, id, transport.ErrClosed)
	case !ok:
		return false, fmt.Errorf("herald/rabbitmq: poison %s %s: not confirmed: the broker refused it or the connection was lost", op, id)
	}
	select {
	case r := <-w:
		return r, nil
	case <-ctx.Done():
		return false, fmt.Errorf("herald/rabbitmq: poison %s %s: stored, waiting for the index: %w", op, id, ctx.Err())
	case <-x.t.closed:
		return false, transport.ErrClosed
	}
}

// ready starts the index if needed and bounds ctx by RequestTimeout.
func (x *poisonIndex) ready(ctx context.Context) (context.Context, context.CancelFunc, error) {
	ctx, cancel := x.t.requestCtx(ctx)
	if err := x.start(ctx); err != nil {
		cancel()
		return nil, nil, err
	}
	return ctx, cancel, nil
}

// PutPoison stores rec in the poison stream and returns nil once the broker
// has confirmed it and this transport's index holds it.
//
// The transport keeps the bus's poison records (it is a
// transport.PoisonStore) in the stream queue "<Prefix>.poison". A stream is an
// append-only log that consumers read from any offset without removing
// anything, so records survive restarts and every process sees all of them.
// Each message is an operation, told by its headers:
//
//	put     a record: its JSON without the payload, a line feed, the payload
//	delete  a tombstone: the record with that ID is gone
//	sync    a marker, written when an index starts or misses an ID
//
// Each transport keeps an index of the stream in memory (record ID → offset,
// handler, event name), fed by one consumer that follows the stream from its
// first offset. A put or delete returns once the index has applied it, so a
// process reads its own writes; records written by other processes appear
// within the time the broker takes to deliver them. The first tombstone of an
// ID in stream order is the one that deletes it, so racing purges and replays
// in several processes agree on which one found the record. Reading a record
// (Get, or a page of List) is a short-lived consumer from its offset. Memory:
// about 100 bytes per live record. Records stay until deleted or until
// PoisonMaxAge has passed for their whole stream segment. The stream itself
// only grows (records, tombstones, markers) unless PoisonMaxAge is set, and a
// transport reads it whole when its index starts.
func (t *Transport) PutPoison(ctx context.Context, rec transport.PoisonRecord) error {
	ctx, cancel, err := t.poison.ready(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if rec.ID == "" {
		return fmt.Errorf("herald/rabbitmq: %w: poison record without an ID", transport.ErrInvalidOption)
	}
	body, err := adapterkit.EncodePoison(rec)
	if err != nil {
		return fmt.Errorf("herald/rabbitmq: encode poison record %s: %w", rec.ID, err)
	}
	if len(body) > t.cfg.MaxMessageSize {
		return fmt.Errorf("herald/rabbitmq: %w: poison record %s is %d bytes, the limit is %d", transport.ErrTooLarge, rec.ID, len(body), t.cfg.MaxMessageSize)
	}
	_, err = t.poison.write(ctx, "put", rec.ID, rec.Handler, rec.Event.Name, body)
	return err
}

// DeletePoison appends a tombstone for id; found is false if the index has no
// live record with that ID (also when another caller deleted it first).
func (t *Transport) DeletePoison(ctx context.Context, id string) (bool, error) {
	ctx, cancel, err := t.poison.ready(ctx)
	if err != nil {
		return false, err
	}
	defer cancel()
	if _, ok := t.poison.lookup(ctx, id); !ok {
		return false, nil
	}
	return t.poison.write(ctx, "delete", id, "", "", nil)
}

// lookup returns id's entry; on a miss it syncs with the stream once (the
// record may be another process's, not applied yet) and looks again.
func (x *poisonIndex) lookup(ctx context.Context, id string) (pentry, bool) {
	get := func() (pentry, bool) {
		x.mu.Lock()
		defer x.mu.Unlock()
		return x.index.Get(id)
	}
	if e, ok := get(); ok {
		return e, true
	}
	if _, err := x.write(ctx, "sync", "", "", "", nil); err != nil {
		return pentry{}, false
	}
	return get()
}

// GetPoison returns the record with id; found is false if there is none.
func (t *Transport) GetPoison(ctx context.Context, id string) (transport.PoisonRecord, bool, error) {
	ctx, cancel, err := t.poison.ready(ctx)
	if err != nil {
		return transport.PoisonRecord{}, false, err
	}
	defer cancel()
	e, ok := t.poison.lookup(ctx, id)
	if !ok {
		return transport.PoisonRecord{}, false, nil
	}
	recs, err := t.readRecords(ctx, []pentry{e})
	if err != nil || len(recs) == 0 {
		return transport.PoisonRecord{}, false, err
	}
	return recs[0], true, nil
}

// ListPoison returns a page of the records matching q, oldest first, and the
// cursor of the next page ("" after the last): a stream offset. The index
// picks the page; its bodies are read from the stream by one short-lived
// consumer. q.Limit defaults to 100 and is capped at 1000.
func (t *Transport) ListPoison(ctx context.Context, q transport.PoisonQuery) ([]transport.PoisonRecord, string, error) {
	ctx, cancel, err := t.poison.ready(ctx)
	if err != nil {
		return nil, "", err
	}
	defer cancel()
	after, limit, err := adapterkit.PoisonPage("rabbitmq", q)
	if err != nil {
		return nil, "", err
	}
	t.poison.mu.Lock()
	page, more := t.poison.index.Page(q, after, limit)
	t.poison.mu.Unlock()
	if len(page) == 0 {
		return nil, "", nil
	}
	recs, err := t.readRecords(ctx, page)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if more {
		next = strconv.FormatInt(page[len(page)-1].Offset, 10)
	}
	return recs, next, nil
}

// readRecords reads the records of entries (in offset order) from the stream.
// Entries close together are read by one consumer; far apart, one each. A
// record no longer in the stream (deleted meanwhile, or aged out) is left out.
func (t *Transport) readRecords(ctx context.Context, entries []pentry) ([]transport.PoisonRecord, error) {
	var out []transport.PoisonRecord
	for lo := 0; lo < len(entries); {
		hi := lo + 1
		for hi < len(entries) && entries[hi].Offset-entries[lo].Offset <= int64(4*(hi-lo+1)+64) {
			hi++
		}
		recs, err := t.readRange(ctx, entries[lo:hi])
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
		lo = hi
	}
	return out, nil
}

// readRange reads the stream from the first entry's offset to the last one's
// and decodes the entries' records.
func (t *Transport) readRange(ctx context.Context, entries []pentry) ([]transport.PoisonRecord, error) {
	want := make(map[int64]bool, len(entries))
	for _, e := range entries {
		want[e.Offset] = true
	}
	first, last := entries[0].Offset, entries[len(entries)-1].Offset
	var out []transport.PoisonRecord
	err := t.withChannel(ctx, func(ch *amqp.Channel) error {
		if err := ch.Qos(min(int(last-first)+1, 1000), 0, false); err != nil {
			return err
		}
		ds, err := ch.Consume(t.poisonName(), "", false, false, false, false, amqp.Table{"x-stream-offset": first})
		if err != nil {
			return err
		}
		for d := range ds {
			off, _ := d.Headers[hdrStreamOffset].(int64)
			_ = d.Ack(false)
			if want[off] && hdr(d.Headers, hdrPoisonOp) == "put" {
				rec, err := adapterkit.DecodePoison(d.Body)
				if err != nil {
					return fmt.Errorf("poison record at offset %d: %w", off, err)
				}
				out = append(out, rec)
			}
			if off >= last {
				return nil
			}
		}
		return errors.New("poison stream consumer closed")
	})
	if err != nil {
		return nil, t.closedOr(err) // prefixed by withChannel
	}
	// Deleted meanwhile: left out.
	live := out[:0]
	t.poison.mu.Lock()
	for _, r := range out {
		if _, ok := t.poison.index.Get(r.ID); ok {
			live = append(live, r)
		}
	}
	t.poison.mu.Unlock()
	return live, nil
}
