package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

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

// Page sizes of ListPoison.
const (
	defaultPoisonPage = 100
	maxPoisonPage     = 1000
)

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

type poisonEntry struct {
	offset int64
	rec    transport.PoisonRecord
	dead   bool
}

// poisonView is a transport's reading of the poison topic.
type poisonView struct {
	t  *Transport
	mu sync.Mutex
	cl *kgo.Client // produces and reads poison records; made on first use

	next  int64 // offset after the last record read
	byID  map[string]*poisonEntry
	order []*poisonEntry // by offset; dead ones are dropped when they are many
	dead  int
}

func newPoisonView(t *Transport) *poisonView {
	return &poisonView{t: t, byID: map[string]*poisonEntry{}}
}

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
	if old := v.byID[id]; old != nil {
		old.dead = true
		v.dead++
		delete(v.byID, id)
	}
	if r.Value == nil {
		return // tombstone
	}
	e := &poisonEntry{offset: r.Offset}
	if err := json.Unmarshal(r.Value, &e.rec); err != nil {
		v.t.cfg.Logger.Sugar().Warnf("herald/kafka: poison record at offset %d of %s is not JSON, skipped: %v", r.Offset, v.t.PoisonTopic(), err)
		return
	}
	v.byID[id] = e
	v.order = append(v.order, e)
	if v.dead > 1024 && v.dead > len(v.order)/2 {
		live := v.order[:0]
		for _, e := range v.order {
			if !e.dead {
				live = append(live, e)
			}
		}
		clear(v.order[len(live):])
		v.order, v.dead = live, 0
	}
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
func (t *Transport) ListPoison(ctx context.Context, q transport.PoisonQuery) ([]transport.PoisonRecord, string, error) {
	after := int64(-1)
	if q.After != "" {
		n, err := strconv.ParseInt(q.After, 10, 64)
		if err != nil || n < 0 {
			return nil, "", fmt.Errorf("herald/kafka: %w: poison cursor %q", transport.ErrInvalidOption, q.After)
		}
		after = n
	}
	limit := q.Limit
	if limit <= 0 {
		limit = defaultPoisonPage
	}
	limit = min(limit, maxPoisonPage)
	ctx, cancel := t.requestCtx(ctx)
	defer cancel()
	v := t.poison
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.catchUp(ctx); err != nil {
		return nil, "", err
	}
	i := sort.Search(len(v.order), func(i int) bool { return v.order[i].offset > after })
	var recs []transport.PoisonRecord
	for ; i < len(v.order); i++ {
		e := v.order[i]
		if e.dead || q.Handler != "" && e.rec.Handler != q.Handler || q.Event != "" && e.rec.Event.Name != q.Event {
			continue
		}
		if len(recs) == limit {
			return recs, strconv.FormatInt(v.order[i-1].offset, 10), nil
		}
		recs = append(recs, e.rec)
	}
	return recs, "", nil
}

// GetPoison returns the record with id; found is false if there is none.
func (t *Transport) GetPoison(ctx context.Context, id string) (transport.PoisonRecord, bool, error) {
	ctx, cancel := t.requestCtx(ctx)
	defer cancel()
	v := t.poison
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.catchUp(ctx); err != nil {
		return transport.PoisonRecord{}, false, err
	}
	e := v.byID[id]
	if e == nil {
		return transport.PoisonRecord{}, false, nil
	}
	return e.rec, true, nil
}

// DeletePoison purges the record with id: it appends a tombstone, and the
// record is gone for every later call of every process. found is false if
// there was no record (also when another caller purged it first).
func (t *Transport) DeletePoison(ctx context.Context, id string) (bool, error) {
	ctx, cancel := t.requestCtx(ctx)
	defer cancel()
	v := t.poison
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.catchUp(ctx); err != nil {
		return false, err
	}
	e := v.byID[id]
	if e == nil {
		return false, nil
	}
	if err := v.cl.ProduceSync(ctx, &kgo.Record{Topic: t.PoisonTopic(), Key: []byte(id)}).FirstErr(); err != nil {
		return false, fmt.Errorf("herald/kafka: purge poison record %s: %w", id, err)
	}
	e.dead = true
	v.dead++
	delete(v.byID, id)
	return true, nil
}
