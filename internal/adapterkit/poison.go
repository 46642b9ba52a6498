package adapterkit

import (
	"bytes"
	"encoding/json"
	"errors"
	"sort"
	"strconv"

	"github.com/heraldbus/herald/transport"
)

// Page sizes of a transport's ListPoison.
const (
	DefaultPoisonPage = 100  // a query's zero Limit
	MaxPoisonPage     = 1000 // the largest page
)

// PoisonPage reads the page that q asks for from a transport whose cursors
// are log offsets: after is the offset q.After names (-1 for none: from the
// start) and limit is q.Limit, [DefaultPoisonPage] when not positive and at
// most [MaxPoisonPage]. A cursor that is not an offset is an [Invalid] error
// of the adapter.
func PoisonPage(adapter string, q transport.PoisonQuery) (after int64, limit int, err error) {
	after = -1
	if q.After != "" {
		n, err := strconv.ParseInt(q.After, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, Invalid(adapter, "poison cursor %q", q.After)
		}
		after = n
	}
	limit = q.Limit
	if limit <= 0 {
		limit = DefaultPoisonPage
	}
	return after, min(limit, MaxPoisonPage), nil
}

// EncodePoison is the body of a stored poison record: its JSON without the
// payload, a line feed, and the payload as it is (not base64). The error is
// the JSON encoder's.
func EncodePoison(rec transport.PoisonRecord) ([]byte, error) {
	payload := rec.Payload
	rec.Payload = nil
	js, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	body := make([]byte, 0, len(js)+1+len(payload))
	return append(append(append(body, js...), '\n'), payload...), nil
}

// DecodePoison decodes a body made by [EncodePoison]. The record's payload
// is a copy: body may be reused.
func DecodePoison(body []byte) (transport.PoisonRecord, error) {
	var rec transport.PoisonRecord
	i := bytes.IndexByte(body, '\n')
	if i < 0 {
		return rec, errors.New("no line feed after the record's JSON")
	}
	if err := json.Unmarshal(body[:i], &rec); err != nil {
		return rec, err
	}
	if len(body) > i+1 {
		rec.Payload = append([]byte(nil), body[i+1:]...)
	}
	return rec, nil
}

// PoisonEntry is a live poison record of a [PoisonIndex]: where the log
// holds it, what queries match it by, and what the transport keeps of it.
type PoisonEntry[V any] struct {
	Offset         int64
	Handler, Event string // the record's handler and event name
	Value          V
}

type indexed[V any] struct {
	PoisonEntry[V]
	dead bool
}

// PoisonIndex is the in-memory view of a poison log (a Kafka topic, a
// RabbitMQ stream) where a record is put by appending it and deleted by
// appending a tombstone: the live records by ID, and in offset order for
// paging. Entries must be put in increasing offset order. The zero value is
// empty and ready. A PoisonIndex is not safe for concurrent use: its owner
// locks it.
type PoisonIndex[V any] struct {
	byID  map[string]*indexed[V]
	order []*indexed[V] // by offset; dead ones are dropped when they are many
	dead  int
}

// Put makes e the record with id, replacing any live one.
func (x *PoisonIndex[V]) Put(id string, e PoisonEntry[V]) {
	x.Delete(id)
	if x.byID == nil {
		x.byID = map[string]*indexed[V]{}
	}
	n := &indexed[V]{PoisonEntry: e}
	x.byID[id] = n
	x.order = append(x.order, n)
}

// Delete removes the record with id and reports whether there was one.
func (x *PoisonIndex[V]) Delete(id string) bool {
	old := x.byID[id]
	if old == nil {
		return false
	}
	old.dead = true
	x.dead++
	delete(x.byID, id)
	if x.dead > 1024 && x.dead > len(x.order)/2 {
		live := x.order[:0]
		for _, e := range x.order {
			if !e.dead {
				live = append(live, e)
			}
		}
		clear(x.order[len(live):])
		x.order, x.dead = live, 0
	}
	return true
}

// Get returns the record with id.
func (x *PoisonIndex[V]) Get(id string) (PoisonEntry[V], bool) {
	if e := x.byID[id]; e != nil {
		return e.PoisonEntry, true
	}
	return PoisonEntry[V]{}, false
}

// Len is the number of live records.
func (x *PoisonIndex[V]) Len() int { return len(x.byID) }

// Page returns, in offset order, up to limit live records after the offset
// after that match q's handler and event (an empty one matches all), and
// whether more follow.
func (x *PoisonIndex[V]) Page(q transport.PoisonQuery, after int64, limit int) (page []PoisonEntry[V], more bool) {
	i := sort.Search(len(x.order), func(i int) bool { return x.order[i].Offset > after })
	for ; i < len(x.order); i++ {
		e := x.order[i]
		if e.dead || q.Handler != "" && e.Handler != q.Handler || q.Event != "" && e.Event != q.Event {
			continue
		}
		if len(page) == limit {
			return page, true
		}
		page = append(page, e.PoisonEntry)
	}
	return page, false
}
