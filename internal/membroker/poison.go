package membroker

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/heraldbus/herald/transport"
)

// DefaultPageSize is the page size of ListPoison when the query sets none.
const DefaultPageSize = 100

// PoisonMap is a transport.PoisonStore in process memory: records live as
// long as the process. Listing a page costs O(log n + page), so that a large
// store is listed page by page without sorting it each time.
type PoisonMap struct {
	mu    sync.Mutex
	seq   uint64
	byID  map[string]*poisonEntry
	order []*poisonEntry // by seq; deleted entries are compacted away lazily
	dead  int
}

type poisonEntry struct {
	seq     uint64
	rec     transport.PoisonRecord
	deleted bool
}

var _ transport.PoisonStore = (*PoisonMap)(nil)

// NewPoisonMap returns an empty store.
func NewPoisonMap() *PoisonMap { return &PoisonMap{byID: map[string]*poisonEntry{}} }

// PutPoison stores rec, replacing a record with the same ID (which then moves
// to the end of the order).
func (p *PoisonMap) PutPoison(ctx context.Context, rec transport.PoisonRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.byID[rec.ID]; old != nil {
		old.deleted = true
		p.dead++
	}
	p.seq++
	e := &poisonEntry{seq: p.seq, rec: rec}
	p.byID[rec.ID] = e
	p.order = append(p.order, e)
	return nil
}

// ListPoison returns a page of records matching q, oldest first; the cursor
// is the last record's sequence number.
func (p *PoisonMap) ListPoison(ctx context.Context, q transport.PoisonQuery) ([]transport.PoisonRecord, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	var after uint64
	if q.After != "" {
		n, err := strconv.ParseUint(q.After, 10, 64)
		if err != nil {
			return nil, "", fmt.Errorf("herald/memory: %w: poison cursor %q", transport.ErrInvalidOption, q.After)
		}
		after = n
	}
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultPageSize
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	i, _ := slices.BinarySearchFunc(p.order, after+1, func(e *poisonEntry, s uint64) int {
		switch {
		case e.seq < s:
			return -1
		case e.seq > s:
			return 1
		}
		return 0
	})
	var out []transport.PoisonRecord
	var last uint64
	for ; i < len(p.order); i++ {
		e := p.order[i]
		if e.deleted || (q.Handler != "" && e.rec.Handler != q.Handler) || (q.Event != "" && e.rec.Event.Name != q.Event) {
			continue
		}
		if len(out) == limit {
			return out, strconv.FormatUint(last, 10), nil
		}
		out = append(out, e.rec)
		last = e.seq
	}
	return out, "", nil
}

// GetPoison returns the record with id.
func (p *PoisonMap) GetPoison(ctx context.Context, id string) (transport.PoisonRecord, bool, error) {
	if err := ctx.Err(); err != nil {
		return transport.PoisonRecord{}, false, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.byID[id]
	if !ok {
		return transport.PoisonRecord{}, false, nil
	}
	return e.rec, true, nil
}

// DeletePoison removes the record with id.
func (p *PoisonMap) DeletePoison(ctx context.Context, id string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.byID[id]
	if !ok {
		return false, nil
	}
	delete(p.byID, id)
	e.deleted = true
	p.dead++
	if p.dead > 1024 && p.dead > len(p.order)/2 {
		p.order = slices.DeleteFunc(p.order, func(e *poisonEntry) bool { return e.deleted })
		p.dead = 0
	}
	return true, nil
}
