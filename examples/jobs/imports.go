package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/heraldbus/herald/bus"
)

// ImportRow is one data row of an imported CSV file: a contact to add to the
// directory. Its event ID is rowID(Import, Row).
type ImportRow struct {
	Import string   `json:"import"` // the import's job ID
	Row    int      `json:"row"`    // the row's number in the file, the header being row 1
	Fields []string `json:"fields"` // the row's fields, as read
}

// importHeader is the header an import file starts with; its data rows have
// these fields, in this order.
var importHeader = []string{"email", "name"}

// Limits of an import file.
const maxImportRows = 10_000

// importRecord is what the service keeps of an import, in the blob store
// under importName(ID), written before its rows are published: the rows'
// statuses come from Track of each row's event (rowID), which needs their
// number.
type importRecord struct {
	ID      string    `json:"id"`
	Rows    int       `json:"rows"` // data rows: rows 2 to Rows+1 of the file
	Created time.Time `json:"created"`
	// Error says why publishing the rows failed, if it did: the rows that
	// were not published stay unknown to tracking.
	Error string `json:"error,omitempty"`
}

func importName(id string) string { return "imports/" + id }

// rowID is the event ID of row n of the import id.
func rowID(id string, n int) string { return id + "-row-" + strconv.Itoa(n) }

// errBadCSV: the file cannot be imported at all (not CSV, no header, no
// rows); its message says why and where.
var errBadCSV = errors.New("bad CSV")

// parseImport reads an import file into its rows, numbered as a spreadsheet
// numbers them (the header is row 1). It checks only the file's shape: the
// header and the CSV syntax. Each row's content is the handler's to judge, so
// that a bad row fails alone, poisoned with its number and reason, while the
// others are imported.
func parseImport(id string, r io.Reader) ([]ImportRow, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // a row with the wrong number of fields is a bad row, not a bad file
	cr.ReuseRecord = false
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: empty file, want the header %s", errBadCSV, strings.Join(importHeader, ","))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadCSV, err)
	}
	if len(header) != len(importHeader) {
		return nil, fmt.Errorf("%w: header %q, want %s", errBadCSV, strings.Join(header, ","), strings.Join(importHeader, ","))
	}
	for i, h := range header {
		if !strings.EqualFold(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")), importHeader[i]) {
			return nil, fmt.Errorf("%w: header %q, want %s", errBadCSV, strings.Join(header, ","), strings.Join(importHeader, ","))
		}
	}
	var rows []ImportRow
	for n := 2; ; n++ {
		fields, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// A syntax error (a bare or unclosed quote) leaves the reader
			// unsure where the next row starts: the whole file is refused.
			return nil, fmt.Errorf("%w: row %d: %w", errBadCSV, n, err)
		}
		if len(rows) == maxImportRows {
			return nil, fmt.Errorf("%w: more than %d rows", errBadCSV, maxImportRows)
		}
		rows = append(rows, ImportRow{Import: id, Row: n, Fields: fields})
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%w: no rows after the header", errBadCSV)
	}
	return rows, nil
}

// contact is what an imported row becomes.
type contact struct {
	Email  string `json:"email"`
	Name   string `json:"name"`
	Import string `json:"import"`
	Row    int    `json:"row"`
}

func contactName(email string) string { return "contacts/" + strings.ToLower(email) }

// check validates a row: its error, made permanent by the handler, is the
// reason its poison record and the import's status show.
func (e ImportRow) check() (contact, error) {
	if len(e.Fields) != len(importHeader) {
		return contact{}, fmt.Errorf("row %d: %d fields, want %d (%s)", e.Row, len(e.Fields), len(importHeader), strings.Join(importHeader, ","))
	}
	email, name := strings.TrimSpace(e.Fields[0]), strings.TrimSpace(e.Fields[1])
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email {
		if err == nil {
			err = errors.New("a display name or angle brackets: want the bare address")
		}
		return contact{}, fmt.Errorf("row %d: email %q: %w", e.Row, email, err)
	}
	if name == "" {
		return contact{}, fmt.Errorf("row %d: empty name", e.Row)
	}
	return contact{Email: addr.Address, Name: name, Import: e.Import, Row: e.Row}, nil
}

// importContact stores the contact of a checked row (idempotent: a
// redelivered row writes the same contact again).
func importContact(ctx context.Context, store blobStore, c contact) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return store.Put(ctx, contactName(c.Email), b)
}

// publishRows publishes the rows of the import id in one batch, each with
// its own event ID (rowID), and returns once the transport holds them all
// (over NATS: pipelined, every row sent before any acknowledgement is
// awaited).
func (a *app) publishRows(ctx context.Context, id string, rows []ImportRow) error {
	ids := make([]string, len(rows))
	for i, row := range rows {
		ids[i] = rowID(id, row.Row)
	}
	return bus.PublishBatch(ctx, a.bus, rows, bus.WithMessageIDs(ids...))
}

// putImport stores an import record.
func (a *app) putImport(ctx context.Context, rec importRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return a.store.Put(ctx, importName(rec.ID), data)
}
