package memory

import (
	"cmp"
	"context"
	"slices"

	"github.com/heraldbus/herald/middleware"
)

// The broker keeps poison records in memory, for the life of the process; a
// Transport is the bus's poison store (middleware.PoisonStore).

type poisonEntry struct {
	seq uint64
	rec middleware.PoisonRecord
}

var _ middleware.PoisonStore = (*Transport)(nil)

// PutPoison stores rec, replacing a record with the same ID.
func (t *Transport) PutPoison(ctx context.Context, rec middleware.PoisonRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.isClosed() {
		return ErrClosed
	}
	t.b.pmu.Lock()
	defer t.b.pmu.Unlock()
	t.b.pseq++
	t.b.poison[rec.ID] = &poisonEntry{seq: t.b.pseq, rec: rec}
	return nil
}

// ListPoison returns the records of handler ("" for all), oldest first.
func (t *Transport) ListPoison(ctx context.Context, handler string) ([]middleware.PoisonRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t.b.pmu.Lock()
	entries := make([]*poisonEntry, 0, len(t.b.poison))
	for _, e := range t.b.poison {
		if handler == "" || e.rec.Handler == handler {
			entries = append(entries, e)
		}
	}
	t.b.pmu.Unlock()
	slices.SortFunc(entries, func(a, b *poisonEntry) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]middleware.PoisonRecord, len(entries))
	for i, e := range entries {
		out[i] = e.rec
	}
	return out, nil
}

// GetPoison returns the record with id.
func (t *Transport) GetPoison(ctx context.Context, id string) (middleware.PoisonRecord, bool, error) {
	if err := ctx.Err(); err != nil {
		return middleware.PoisonRecord{}, false, err
	}
	t.b.pmu.Lock()
	defer t.b.pmu.Unlock()
	e, ok := t.b.poison[id]
	if !ok {
		return middleware.PoisonRecord{}, false, nil
	}
	return e.rec, true, nil
}

// DeletePoison removes the record with id.
func (t *Transport) DeletePoison(ctx context.Context, id string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	t.b.pmu.Lock()
	defer t.b.pmu.Unlock()
	_, ok := t.b.poison[id]
	delete(t.b.poison, id)
	return ok, nil
}
