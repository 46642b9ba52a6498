package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/heraldbus/herald/bus"
)

// Handler returns the service's HTTP API:
//
//	POST /emails           {"to","subject","body"} → 202, Location: /jobs/{id}
//	POST /images?max=N     a PNG or JPEG body (or form file) → 202, Location: /jobs/{id}
//	POST /imports          a CSV body (header email,name) → 202, Location: /jobs/{id}
//	GET  /jobs/{id}        the job's status, JSON
//	GET  /thumbnails/{id}  a thumbnail made by an image job
//	GET  /quote?item=&qty= a price, asked of the pricing responder (request/reply)
//	GET  /mailbox          what the in-process SMTP server received (the demo's mail relay)
//	POST /mailbox/fail?next=N&code=C  make its next N messages fail with C, default 451 (N -1: all; 0: none)
func (a *app) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /emails", a.postEmail)
	mux.HandleFunc("POST /images", a.postImage)
	mux.HandleFunc("POST /imports", a.postImport)
	mux.HandleFunc("GET /jobs/{id}", a.getJob)
	mux.HandleFunc("GET /thumbnails/{id}", a.getThumbnail)
	mux.HandleFunc("GET /quote", a.getQuote)
	mux.HandleFunc("GET /mailbox", a.getMailbox)
	mux.HandleFunc("POST /mailbox/fail", a.postMailboxFail)
	return mux
}

// accepted answers 202 for a job: its Location is its status.
type accepted struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

func writeAccepted(w http.ResponseWriter, id string) {
	w.Header().Set("Location", "/jobs/"+id)
	writeJSON(w, http.StatusAccepted, accepted{ID: id, Status: "/jobs/" + id})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// httpError is an error body: {"error": "..."}.
type httpError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, httpError{Error: fmt.Sprintf(format, args...)})
}

// readBody reads at most limit bytes of the request body; a larger body is
// answered 413 and ok is false.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) (data []byte, ok bool) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	return data, bodyRead(w, err, limit)
}

// readFile reads an uploaded file: the body itself, or the first file of a
// multipart/form-data body (curl -F image=@photo.png), within limit bytes.
func readFile(w http.ResponseWriter, r *http.Request, limit int64) (data []byte, ok bool) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "multipart/form-data" {
		return readBody(w, r, limit)
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	mr, err := r.MultipartReader()
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading the form: %v", err)
		return nil, false
	}
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			writeError(w, http.StatusBadRequest, "the form has no file")
			return nil, false
		}
		if err != nil {
			return nil, bodyRead(w, err, limit)
		}
		if p.FileName() != "" {
			data, err := io.ReadAll(p)
			return data, bodyRead(w, err, limit)
		}
	}
}

// bodyRead answers a body that could not be read (413 when too large) and
// reports whether err is nil.
func bodyRead(w http.ResponseWriter, err error, limit int64) bool {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "body larger than %d bytes", limit)
		return false
	case err != nil:
		writeError(w, http.StatusBadRequest, "reading the body: %v", err)
		return false
	}
	return true
}

// publishFailed answers a publish that failed: 503 when the bus is closing
// (the job was not accepted: the client may try again, on another replica),
// 500 otherwise.
func publishFailed(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, bus.ErrClosed):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "shutting down: job not accepted")
	case r.Context().Err() != nil:
		// The client is gone; nobody reads the answer.
		writeError(w, http.StatusServiceUnavailable, "request cancelled: %v", err)
	default:
		writeError(w, http.StatusInternalServerError, "job not accepted: %v", err)
	}
}

func (a *app) postEmail(w http.ResponseWriter, r *http.Request) {
	data, ok := readBody(w, r, maxEmailBody+8<<10)
	if !ok {
		return
	}
	var e EmailRequested
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		writeError(w, http.StatusBadRequest, "want a JSON object {\"to\", \"subject\", \"body\"}: %v", err)
		return
	}
	if err := e.validate(); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	id := newJobID("email")
	if err := bus.Publish(r.Context(), a.bus, e, bus.WithMessageID(id)); err != nil {
		publishFailed(w, r, err)
		return
	}
	writeAccepted(w, id)
}

func (a *app) postImage(w http.ResponseWriter, r *http.Request) {
	side := defaultMaxSide
	if s := r.URL.Query().Get("max"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < minMaxSide || n > maxMaxSide {
			writeError(w, http.StatusBadRequest, "max: want a number of pixels from %d to %d, got %q", minMaxSide, maxMaxSide, s)
			return
		}
		side = n
	}
	data, ok := readFile(w, r, a.cfg.MaxUpload)
	if !ok {
		return
	}
	format, width, height, err := checkImage(data)
	if err != nil {
		writeError(w, http.StatusBadRequest, "the body is %v", err)
		return
	}
	id := newJobID("image")
	if err := a.store.Put(r.Context(), uploadName(id), data); err != nil {
		writeError(w, http.StatusInternalServerError, "storing the upload: %v", err)
		return
	}
	if err := bus.Publish(r.Context(), a.bus, ThumbnailRequested{Upload: uploadName(id), MaxSide: side}, bus.WithMessageID(id)); err != nil {
		_ = a.store.Delete(context.WithoutCancel(r.Context()), uploadName(id))
		publishFailed(w, r, err)
		return
	}
	a.say("%s: %dx%d %s accepted", id, width, height, format)
	writeAccepted(w, id)
}

func (a *app) postImport(w http.ResponseWriter, r *http.Request) {
	data, ok := readBody(w, r, a.cfg.MaxImport)
	if !ok {
		return
	}
	id := newJobID("import")
	rows, err := parseImport(id, bytes.NewReader(data))
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	rec := importRecord{ID: id, Rows: len(rows), Created: time.Now().UTC()}
	// The record first: once a row is published, its import has a status.
	if err := a.putImport(r.Context(), rec); err != nil {
		writeError(w, http.StatusInternalServerError, "storing the import: %v", err)
		return
	}
	if err := a.publishRows(r.Context(), id, rows); err != nil {
		// Some rows may be published already, and will be imported: the
		// record says what happened, and the status shows both.
		rec.Error = fmt.Sprintf("publishing the rows: %v", err)
		_ = a.putImport(context.WithoutCancel(r.Context()), rec)
		publishFailed(w, r, fmt.Errorf("%w (see /jobs/%s for the rows published before)", err, id))
		return
	}
	a.say("%s: %d rows accepted", id, len(rows))
	writeAccepted(w, id)
}

func (a *app) getThumbnail(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if jobKind(id) != "image" {
		writeError(w, http.StatusNotFound, "no thumbnail %q", id)
		return
	}
	data, err := a.store.Get(r.Context(), thumbName(id))
	if errors.Is(err, errNotFound) {
		writeError(w, http.StatusNotFound, "no thumbnail %q (yet: see /jobs/%s)", id, id)
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	w.Header().Set("Content-Type", http.DetectContentType(data))
	w.Header().Set("Cache-Control", "public, max-age=86400, immutable")
	_, _ = w.Write(data)
}

// mailView is a received message as GET /mailbox shows it.
type mailView struct {
	From      string   `json:"from"`
	To        []string `json:"to"`
	MessageID string   `json:"message_id"`
	Subject   string   `json:"subject"`
	Body      string   `json:"body"`
}

func (a *app) getMailbox(w http.ResponseWriter, _ *http.Request) {
	views := []mailView{}
	for _, m := range a.mail.Messages() {
		v := mailView{From: m.From, To: m.To}
		if p, err := parseMail(m.Data); err == nil {
			v.MessageID, v.Subject, v.Body = p.MessageID, p.Subject, p.Body
		}
		views = append(views, v)
	}
	writeJSON(w, http.StatusOK, views)
}

func (a *app) postMailboxFail(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, err := strconv.Atoi(q.Get("next"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "next: want a number of messages (-1: all until next=0)")
		return
	}
	code := 451
	if s := q.Get("code"); s != "" {
		if code, err = strconv.Atoi(s); err != nil || code < 400 || code > 599 {
			writeError(w, http.StatusBadRequest, "code: want an SMTP failure code, 400 to 599")
			return
		}
	}
	a.mail.Fail(n, code)
	w.WriteHeader(http.StatusNoContent)
}
