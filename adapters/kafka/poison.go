package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldbus/herald/internal/adapterkit"
	"github.com/heraldbus/herald/transport"
)

// Poison records live in the topic TopicPrefix+"_poison" (one partition,
// compacted), one record per poison record: key = the record ID, value = the
// record as JSON. Purge is logical: it appends a tombstone (the ID with no
// value), which hides the record at once and lets compaction delete both
// later; replacing a record appends it again.
//
// Each transport reads the topic into a view the first time a poison call
// needs it, and catches up to the partition's end before every call (one
// ListOffsets request, then the records appended since), so that a record
// stored by any process is seen by the next call of every process. The view
// holds the live records in memory: a poison queue of millions of records
// needs as much memory as they take. Listing a page is then bounded by the
// page.

var _ transport.PoisonStore = (*Transport)(nil)

// poisonTopicConfigs are the configs of the poison topic: compacted, and
// room for a record of an event at MaxMessageBytes with its error, stack and
// metadata.
func (t *Transport) poisonTopicConfigs() map[string]*string {
	compact := "compact"
	size := strconv.Itoa(t.poisonMaxBytes() + recordOverhead)
	return map[string]*string{"cleanup.policy": &compact, "max.message.bytes": &size}
}

// poisonMaxBytes bounds a poison record's JSON: base64 grows a payload by a
// third; error, stack and metadata get 1 MiB besides.
func (t *Transport) poisonMaxBytes() int { return t.cfg.MaxMessageBytes*4/3 + 1<<20 + 64<<10 }

// poisonView is a transport's reading of the poison topic.
type poisonView struct {
	t  *Transport
	mu sync.Mutex
	cl *kgo.Client // produces and reads poison records; made on first use

	next  int64 // offset after the last record read
	index adapterkit.PoisonIndex[transport.PoisonRecord]
}

func newPoisonView(t *Transport) *poisonView { return &poisonView{t: t} }

func (v *poisonView) close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cl != nil {
		v.cl.Close()
	}
}

// ready makes the client (v.mu held).
func (v *poisonView) ready(ctx context.Context) error {
	t := v.t
	if t.isClosed() {
		return fmt.Errorf("herald/kafka: poison records: %w", transport.ErrClosed)
	}
	if err := t.Start(ctx); err != nil {
		return err
	}
	if v.cl != nil {
		return nil
	}
	cl, err := kgo.NewClient(t.cfg.clientOpts(
		kgo.ProducerLinger(0),
		kgo.ProducerBatchMaxBytes(int32(t.poisonMaxBytes()+recordOverhead)),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{t.PoisonTopic(): {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchMaxPartitionBytes(int32(t.poisonMaxBytes()+recordOverhead)),
	)...)
	if err != nil {
		return fmt.Errorf("herald/kafka: poison client: %w", err)
	}
	v.cl = cl
	return nil
}

// catchUp reads the records appended to the poison topic since the last
// call (v.mu held).
func (v *poisonView) catchUp(ctx context.Context) error {
	if err := v.ready(ctx); err != nil {
		return err
	}
	t := v.t
	ends, err := t.adm.ListEndOffsets(ctx, t.PoisonTopic())
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("herald/kafka: poison records: end offset: %w", err)
	}
	end, ok := ends.Lookup(t.PoisonTopic(), 0)
	if !ok {
		return fmt.Errorf("herald/kafka: poison records: topic %s has no partition 0", t.PoisonTopic())
	}
	for v.next < end.Offset {
		fs := v.cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("herald/kafka: poison records: reading %s: %w", t.PoisonTopic(), err)
		}
		var errs []error
		fs.EachError(func(_ string, _ int32, err error) { errs = append(errs, err) })
		if len(errs) > 0 {
			return fmt.Errorf("herald/kafka: poison records: reading %s: %w", t.PoisonTopic(), errors.Join(errs...))
		}
		fs.EachRecord(v.apply)
	}
	return nil
}

// apply takes one record of the poison topic into the view.
func (v *poisonView) apply(r *kgo.Record) {
	if r.Offset < v.next {
		return
	}
	v.next = r.Offset + 1
	id := string(r.Key)
	v.index.Delete(id)
	if r.Value == nil {
		return // tombstone
	}
	var rec transport.PoisonRecord
	if err := json.Unmarshal(r.Value, &rec); err != nil {
		v.t.cfg.Logger.Sugar().Warnf("herald/kafka: poison record at offset %d of %s is not JSON, skipped: %v", r.Offset, v.t.PoisonTopic(), err)
		return
	}
	v.index.Put(id, adapterkit.PoisonEntry[transport.PoisonRecord]{Offset: r.Offset, Handler: rec.Handler, Event: rec.Event.Name, Value: rec})
}

// PutPoison stores rec in the poison topic and returns nil once the broker
// has acknowledged it. A record larger than the poison topic's limit (an
// event near MaxMessageBytes with a very long error) fails with an error
// wrapping [transport.ErrTooLarge]; the bus then nacks the event.
func (t *Transport) PutPoison(ctx context.Context, rec transport.PoisonRecord) error {
	if rec.ID == "" {
		return fmt.Errorf("herald/kafka: %w: poison record without an ID", transport.ErrInvalidOption)
	}
	body, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("herald/kafka: encode poison record %s: %w", rec.ID, err)
	}
	if len(body)+len(rec.ID) > t.poisonMaxBytes() {
		return fmt.Errorf("herald/kafka: %w: poison record %s is %d bytes, the limit is %d", transport.ErrTooLarge, rec.ID, len(body), t.poisonMaxBytes())
	}
	return t.poison.produce(ctx, &kgo.Record{Key: []byte(rec.ID), Value: body})
}

// produce stores r in the poison topic.
func (v *poisonView) produce(ctx context.Context, r *kgo.Record) error {
	ctx, cancel := v.t.requestCtx(ctx)
	defer cancel()
	v.mu.Lock()
	err := v.ready(ctx)
	cl := v.cl
	v.mu.Unlock()
	if err != nil {
		return err
	}
	r.Topic = v.t.PoisonTopic()
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		if errors.Is(err, kgo.ErrClientClosed) {
			err = transport.ErrClosed
		}
		return fmt.Errorf("herald/kafka: store poison record %s: %w", r.Key, err)
	}
	return nil
}

// ListPoison returns a page of the records matching q, oldest first, and the
// cursor of the next page ("" after the last). The cursor is an offset of
// the poison topic; q.Limit defaults to 100 and is capped at 1000.
func (t *Transport) ListPoison(ctx context.Context, q transport.PoisonQuery) (recs []transport.PoisonRecord, next string, err error) {
	after, limit, err := adapterkit.PoisonPage("kafka", q)
	if err != nil {
		return nil, "", err
	}
	err = t.poison.caughtUp(ctx, func(ctx context.Context, v *poisonView) error {
		page, more := v.index.Page(q, after, limit)
		for _, e := range page {
			recs = append(recs, e.Value)
		}
		if more {
			next = strconv.FormatInt(page[len(page)-1].Offset, 10)
		}
		return nil
	})
	return recs, next, err
}

// GetPoison returns the record with id; found is false if there is none.
func (t *Transport) GetPoison(ctx context.Context, id string) (rec transport.PoisonRecord, found bool, err error) {
	err = t.poison.caughtUp(ctx, func(ctx context.Context, v *poisonView) error {
		e, ok := v.index.Get(id)
		rec, found = e.Value, ok
		return nil
	})
	return rec, found, err
}

// DeletePoison purges the record with id: it appends a tombstone, and the
// record is gone for every later call of every process. found is false if
// there was no record (also when another caller purged it first).
func (t *Transport) DeletePoison(ctx context.Context, id string) (found bool, err error) {
	err = t.poison.caughtUp(ctx, func(ctx context.Context, v *poisonView) error {
		if _, ok := v.index.Get(id); !ok {
			return nil
		}
		if err := v.cl.ProduceSync(ctx, &kgo.Record{Topic: t.PoisonTopic(), Key: []byte(id)}).FirstErr(); err != nil {
			return fmt.Errorf("herald/kafka: purge poison record %s: %w", id, err)
		}
		found = v.index.Delete(id)
		return nil
	})
	return found, err
}

// caughtUp calls f with the view caught up with the poison topic, holding
// the view's lock, and with ctx bounded by RequestTimeout.
func (v *poisonView) caughtUp(ctx context.Context, f func(context.Context, *poisonView) error) error {
	ctx, cancel := v.t.requestCtx(ctx)
	defer cancel()
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.catchUp(ctx); err != nil {
		return err
	}
	return f(ctx, v)
}
