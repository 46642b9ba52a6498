// Package outboxtest gives tests a Postgres database and an outbox table of
// their own on it: the database at POSTGRES_URL, and a schema per table (so
// that runs and tests never see each other's events), dropped when the test
// ends.
//
//	func TestX(t *testing.T) {
//		db := outboxtest.DB(t) // fails under CI=true without POSTGRES_URL, skips otherwise
//		ob, err := outbox.New(db, b, outbox.WithTable(outboxtest.Table(t, db)))
//		...
//	}
package outboxtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the pgx driver, as the outbox wants

	"github.com/heraldbus/herald/internal/testenv"
)

// EnvURL is the variable that names the database of the tests.
const EnvURL = "POSTGRES_URL"

// URL returns POSTGRES_URL. Without it, t fails when CI=true (CI must run
// these tests) and is skipped otherwise, with a message that says so.
func URL(t testing.TB) string {
	t.Helper()
	return testenv.Getenv(t, EnvURL, EnvURL+" is not set: these tests need a Postgres database (e.g. POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
}

// DB opens a pool on the database at POSTGRES_URL (see URL), checks that it
// answers, and closes it when t ends.
//
// The tests that use DB run one at a time on a Postgres server, whatever
// their package: DB waits (up to [ExclusiveWait]) for the test before it,
// in any process, to end. The outbox holds back the events of every
// transaction younger than one still in progress anywhere on the server
// (see package outbox, Order), so a test's transactions would otherwise
// delay another package's events, at random.
func DB(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", URL(t))
	if err != nil {
		t.Fatalf("outboxtest: open %s: %v", EnvURL, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("outboxtest: Postgres at %s does not answer: %v", EnvURL, err)
	}
	exclusive(t, db)
	return db
}

// ExclusiveWait bounds how long [DB] waits for the tests of other packages
// to end.
const ExclusiveWait = 10 * time.Minute

// exclusiveKey is the advisory lock that serialises the tests using DB.
const exclusiveKey = 0x6865726f62 // "herob"

// exclusive holds the tests' advisory lock on a connection of its own
// until t ends.
func exclusive(t testing.TB, db *sql.DB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ExclusiveWait)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatalf("outboxtest: connect: %v", err)
	}
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", exclusiveKey); err != nil {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn }) // drop the session, and the lock with it
		_ = conn.Close()
		t.Fatalf("outboxtest: waiting %v for the outbox tests of other packages to end: %v", ExclusiveWait, err)
	}
	t.Cleanup(func() {
		// Ending the session releases the lock, whatever state it is in.
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		_ = conn.Close()
	})
}

// Table returns "schema.outbox" in a new schema of the test's own, dropped
// with everything in it when t ends. The table itself is not created.
func Table(t testing.TB, db *sql.DB) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "herald_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			t.Errorf("outboxtest: drop schema %s: %v", schema, err)
		}
	})
	return schema + ".outbox"
}

// Count returns how many events wait in table.
func Count(t testing.TB, db *sql.DB, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
		t.Fatalf("outboxtest: count %s: %v", table, err)
	}
	return n
}

// Schema returns the schema part of a "schema.table" name.
func Schema(table string) string {
	s, _, _ := strings.Cut(table, ".")
	return s
}

// Forward runs forward (an outbox's Forward method) until the func returned
// is called, at the latest when t ends; stop then waits for forward to
// return, and fails t if it returns an error or has not returned within 10
// seconds of its ctx ending. stop may be called more than once.
func Forward(t testing.TB, forward func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- forward(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("outboxtest: Forward returned %v, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("outboxtest: Forward did not return within 10s of its ctx ending")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
