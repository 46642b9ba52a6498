package transport

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// PoisonRecord is an event a handler could not process, kept so that it can be
// inspected, replayed to that handler alone, or purged.
type PoisonRecord struct {
	ID           string           `json:"id"`              // the record's own ID
	Handler      string           `json:"handler"`         // the handler that failed
	Event        Event            `json:"event"`           // the event's wire metadata
	Payload      []byte           `json:"payload"`         // the encoded event
	Metadata     message.Metadata `json:"metadata"`        // the message's metadata as delivered
	Error        string           `json:"error"`           // the last error
	Stack        string           `json:"stack,omitempty"` // the stack of the panic, if the handler panicked
	Attempts     int              `json:"attempts"`        // how many times the handler was called for it
	FirstFailure time.Time        `json:"first_failure"`
	LastFailure  time.Time        `json:"last_failure"`
}

// PoisonQuery selects a page of poison records. The zero value is the first
// page of every handler's records at the store's default page size.
type PoisonQuery struct {
	// Handler keeps only the records of this handler; "" keeps all.
	Handler string
	// Event keeps only the records of this event name; "" keeps all.
	Event string
	// After is the cursor returned with the previous page; "" starts at the
	// oldest record.
	After string
	// Limit is the most records a page holds; 0 means the store's default
	// (at most 100 is a good one). A store may return fewer, and still a cursor.
	Limit int
}

// PoisonStore keeps poison records. Implementations are safe for concurrent
// use, honour ctx in every call, and bound each call's work (a call reads one
// page, never the whole store), so that a store of millions of records can be
// listed page by page. A transport that implements it keeps its own records
// (the bus then uses it); otherwise the bus keeps them in process memory.
type PoisonStore interface {
	// PutPoison stores rec, replacing a record with the same ID. When it
	// returns nil the record is as durable as the store goes; only then does
	// the bus acknowledge the event.
	PutPoison(ctx context.Context, rec PoisonRecord) error
	// ListPoison returns a page of records matching q, oldest first, and the
	// cursor of the next page: "" when this page is the last.
	ListPoison(ctx context.Context, q PoisonQuery) (recs []PoisonRecord, next string, err error)
	// GetPoison returns the record with id; found is false if there is none.
	GetPoison(ctx context.Context, id string) (rec PoisonRecord, found bool, err error)
	// DeletePoison removes the record with id; found is false if there was
	// none (also when another caller deleted it first).
	DeletePoison(ctx context.Context, id string) (found bool, err error)
}
