package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/heraldbus/herald/bus"
)

// jobStatus is the answer of GET /jobs/{id}.
type jobStatus struct {
	ID   string `json:"id"`
	Kind string `json:"kind"` // email, image or import
	// State is where the job stands: queued, running, retrying (an attempt
	// failed, another will follow), done or poisoned (given up: see Error).
	// An import is done once every row is done or poisoned: Rows counts them.
	State string `json:"state"`
	// Attempt is the number of the attempt running or last made (email,
	// image); Error the error of the last failed attempt.
	Attempt int    `json:"attempt,omitempty"`
	Error   string `json:"last_error,omitempty"`
	// Result links what the job made: the thumbnail of a done image job.
	Result string `json:"result,omitempty"`
	// Rows counts an import's rows by state; Failed lists the poisoned
	// ones, by row number, with their reason.
	Rows   *rowCounts  `json:"rows,omitempty"`
	Failed []rowFailed `json:"failed,omitempty"`

	Queued   time.Time `json:"queued,omitzero"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
}

// rowCounts counts an import's rows by the state of their delivery.
type rowCounts struct {
	Total    int `json:"total"`
	Queued   int `json:"queued"`
	Running  int `json:"running"`
	Retrying int `json:"retrying"`
	Done     int `json:"done"`
	Failed   int `json:"failed"` // poisoned
	// Unknown rows have no tracking record: published a moment ago and not
	// recorded yet, or their record expired.
	Unknown int `json:"unknown,omitempty"`
}

// rowFailed is a poisoned row of an import.
type rowFailed struct {
	Row   int    `json:"row"`
	Error string `json:"error"`
}

// trackReads bounds the Track calls one import status makes at once.
const trackReads = 16

// getJob answers GET /jobs/{id} from the bus's delivery tracking.
//
// An email or image job is one event, whose ID is the job's: its status is
// the delivery of that event to its handler. An import is many events, one
// per row, with IDs made of the import's ID and the row's number; the import
// record (in the blob store, shared by the replicas) says how many rows
// there are, and the status is Track of each row, counted. Nothing is
// counted by the handlers themselves: counters in a process's memory would be
// wrong with several replicas and lost at a restart, while tracking records
// are written by whichever replica handles a row, and kept by the transport
// (NATS: a key-value bucket shared by every replica). The cost is one Track
// per row per status request (bounded to trackReads at once): fine for the
// thousands of rows this example accepts; a service importing millions would
// keep a per-import counter updated by the handler instead (a key-value entry
// with compare-and-set), and lose the per-row detail.
func (a *app) getJob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var (
		st  jobStatus
		err error
	)
	switch kind := jobKind(id); kind {
	case "email", "image":
		st, err = a.eventStatus(r.Context(), id, kind)
	case "import":
		st, err = a.importStatus(r.Context(), id)
	default:
		err = bus.ErrUnknownEvent
	}
	switch {
	case errors.Is(err, bus.ErrUnknownEvent) || errors.Is(err, errNotFound):
		// The replica that accepted a job finds it at once; over NATS,
		// another one may not for a few milliseconds.
		writeError(w, http.StatusNotFound, "no job %q: never accepted, status expired (kept %v), or accepted by another replica a moment ago", id, a.cfg.StatusTTL)
	case err != nil:
		writeError(w, http.StatusInternalServerError, "status of %s: %v", id, err)
	default:
		writeJSON(w, http.StatusOK, st)
	}
}

// handlerOf is the handler of each kind of one-event job.
var handlerOf = map[string]string{"email": emailHandler, "image": thumbHandler}

// eventStatus is the status of a job made of one event.
func (a *app) eventStatus(ctx context.Context, id, kind string) (jobStatus, error) {
	d, err := a.delivery(ctx, id, handlerOf[kind])
	if err != nil {
		return jobStatus{}, err
	}
	st := jobStatus{
		ID: id, Kind: kind, State: d.State.String(), Attempt: d.Attempt, Error: d.LastError,
		Queued: d.Queued, Started: d.Started, Finished: d.Finished,
	}
	if kind == "image" && d.State == bus.StateDone {
		st.Result = "/thumbnails/" + id
	}
	return st, nil
}

// delivery returns the tracking record of event id at handler.
func (a *app) delivery(ctx context.Context, id, handler string) (bus.Delivery, error) {
	t, err := a.bus.Track(ctx, id)
	if err != nil {
		return bus.Delivery{}, err
	}
	for _, d := range t.Handlers {
		if d.Handler == handler {
			return d, nil
		}
	}
	return bus.Delivery{}, bus.ErrUnknownEvent
}

// importStatus is the status of an import: its rows' deliveries, counted.
func (a *app) importStatus(ctx context.Context, id string) (jobStatus, error) {
	data, err := a.store.Get(ctx, importName(id))
	if err != nil {
		return jobStatus{}, err
	}
	var rec importRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return jobStatus{}, err
	}
	rows := make([]bus.Delivery, rec.Rows)
	errs := make([]error, rec.Rows)
	sem := make(chan struct{}, trackReads)
	var wg sync.WaitGroup
	for i := range rows {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			rows[i], errs[i] = a.delivery(ctx, rowID(id, i+2), importHandler)
		})
	}
	wg.Wait()
	st := jobStatus{ID: id, Kind: "import", Queued: rec.Created, Rows: &rowCounts{Total: rec.Rows}, Error: rec.Error}
	c := st.Rows
	for i, d := range rows {
		if errors.Is(errs[i], bus.ErrUnknownEvent) {
			c.Unknown++
			continue
		}
		if errs[i] != nil {
			return jobStatus{}, errs[i]
		}
		switch d.State {
		case bus.StateQueued:
			c.Queued++
		case bus.StateRunning:
			c.Running++
		case bus.StateRetrying:
			c.Retrying++
		case bus.StateDone:
			c.Done++
		case bus.StatePoisoned:
			c.Failed++
			st.Failed = append(st.Failed, rowFailed{Row: i + 2, Error: d.LastError})
		}
		if !d.Started.IsZero() && (st.Started.IsZero() || d.Started.Before(st.Started)) {
			st.Started = d.Started
		}
		st.Finished = later(st.Finished, d.Finished)
	}
	switch {
	// Rows never published (rec.Error says why) will never finish.
	case c.Done+c.Failed == c.Total || rec.Error != "" && c.Done+c.Failed+c.Unknown == c.Total:
		st.State = bus.StateDone.String()
	case c.Running+c.Retrying+c.Done+c.Failed > 0:
		st.State = bus.StateRunning.String()
		st.Finished = time.Time{}
	default:
		st.State = bus.StateQueued.String()
		st.Finished = time.Time{}
	}
	return st, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
