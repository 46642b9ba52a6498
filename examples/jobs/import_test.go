package main

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// importCSV has 6 rows (2 to 7), 3 of them bad.
const importCSV = `email,name
ann@example.com,Ann
bob@example.com,Bob
not-an-email,Carl
dee@example.com,
"eve@example.com","Eve, the second"
fay@example.com,Fay,extra
`

// An import publishes one event per row; the good rows become contacts, the
// bad ones are poisoned with their row number and reason, and the status
// adds up: total = done + failed, the failed rows listed.
func TestImport(t *testing.T) {
	forEachTransport(t, func(t *testing.T, cfg config) {
		e := start(t, cfg)
		id := e.post("/imports", "text/csv", []byte(importCSV))
		st := e.waitState(id, "done")
		want := rowCounts{Total: 6, Done: 3, Failed: 3}
		if st.Rows == nil || *st.Rows != want {
			t.Fatalf("rows %+v, want %+v", st.Rows, want)
		}
		wantFailed := []rowFailed{
			{4, `row 4: email "not-an-email": mail: missing '@' or angle-addr`},
			{5, "row 5: empty name"},
			{7, "row 7: 3 fields, want 2 (email,name)"},
		}
		if !slices.EqualFunc(st.Failed, wantFailed, func(a, b rowFailed) bool { return a.Row == b.Row && strings.Contains(a.Error, b.Error) }) {
			t.Errorf("failed %+v, want %+v", st.Failed, wantFailed)
		}
		ctx := context.Background()
		for _, w := range wantFailed {
			rec := e.waitPoisoned(importHandler, rowID(id, w.Row))
			var row ImportRow
			if err := json.Unmarshal(rec.Payload, &row); err != nil || row.Row != w.Row || row.Import != id || !strings.Contains(rec.Error, w.Error) || rec.Attempts != 1 {
				t.Errorf("poison record of row %d: %+v (%v), error %q, %d attempts", w.Row, row, err, rec.Error, rec.Attempts)
			}
		}
		for email, name := range map[string]string{"ann@example.com": "Ann", "bob@example.com": "Bob", "eve@example.com": "Eve, the second"} {
			data, err := e.app.store.Get(ctx, contactName(email))
			var c contact
			if err == nil {
				err = json.Unmarshal(data, &c)
			}
			if err != nil || c.Name != name || c.Import != id {
				t.Errorf("contact %s: %+v, %v", email, c, err)
			}
		}
	})
}

// Rows are imported at most ImportWorkers at once: with 2 workers held in
// the handler, 2 rows run and the others wait, queued; the status counts
// them so, then done once released.
func TestImportBoundedConcurrency(t *testing.T) {
	forEachTransport(t, func(t *testing.T, cfg config) {
		cfg.ImportWorkers = 2
		entered := make(chan int, 10)
		release := make(chan struct{})
		cfg.importHook = func(ctx context.Context, row ImportRow) error {
			select {
			case entered <- row.Row:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		e := start(t, cfg)
		defer func() {
			select {
			case <-release:
			default:
				close(release)
			}
		}()
		var csv strings.Builder
		csv.WriteString("email,name\n")
		for i := range 8 {
			csv.WriteString("p" + string(rune('a'+i)) + "@example.com,P\n")
		}
		id := e.post("/imports", "text/csv", []byte(csv.String()))
		// Every row is known to the accepting replica at once.
		if st := e.status(id); st.Rows.Total != 8 || st.Rows.Unknown != 0 {
			t.Errorf("right after the POST: rows %+v", *st.Rows)
		}
		receive(t, entered)
		receive(t, entered)
		st := e.waitStatus(id, func(st jobStatus) bool { return st.Rows.Running == 2 && st.Rows.Queued == 6 })
		if st.State != "running" || st.Rows.Done != 0 || len(entered) != 0 {
			t.Errorf("status %+v rows %+v, %d more rows entered", st, *st.Rows, len(entered))
		}
		close(release)
		st = e.waitState(id, "done")
		if *st.Rows != (rowCounts{Total: 8, Done: 8}) || st.Finished.IsZero() || st.Started.IsZero() {
			t.Errorf("status %+v rows %+v", st, *st.Rows)
		}
	})
}

// Files that cannot be imported at all are refused, with the reason.
func TestImportBadFiles(t *testing.T) {
	cfg := testConfig()
	cfg.MaxImport = 1 << 10
	e := start(t, cfg)
	for _, c := range []struct {
		name, body string
		code       int
		want       string
	}{
		{"empty", "", http.StatusBadRequest, "bad CSV: empty file, want the header email,name"},
		{"no rows", "email,name\n", http.StatusBadRequest, "bad CSV: no rows after the header"},
		{"another header", "mail,full name\nx@example.com,X\n", http.StatusBadRequest, `bad CSV: header "mail,full name", want email,name`},
		{"a bare quote", "email,name\na@example.com,A\nb@example.com,B \"the\" one\n", http.StatusBadRequest, "bad CSV: row 3: parse error on line 3"},
		{"too large", "email,name\n" + strings.Repeat("a@example.com,A\n", 100), http.StatusRequestEntityTooLarge, "body larger than 1024 bytes"},
	} {
		e.expectError(http.MethodPost, "/imports", "text/csv", []byte(c.body), c.code, c.want)
	}
	if n := e.app.store.(*memStore).len(); n != 0 {
		t.Errorf("%d blobs stored", n)
	}
}

// A header with a byte-order mark and other letter cases is a header.
func TestParseImportHeader(t *testing.T) {
	rows, err := parseImport("import-x", strings.NewReader("\ufeffEmail, Name\r\na@example.com,A\r\n"))
	if err != nil || len(rows) != 1 || rows[0].Row != 2 || rows[0].Fields[0] != "a@example.com" {
		t.Errorf("rows %+v, %v", rows, err)
	}
}
