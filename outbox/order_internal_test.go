package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/outbox/outboxtest"
)

type placed struct {
	Seq int `json:"seq"`
}

func (placed) EventName() string { return "outbox_internal_test.Placed" }

// forwarder is a running forwarder on a table of its own, with the rounds
// it ran and the events it forwarded counted, a recorder of what billing
// got, and an open transaction begun before anything was stored.
type forwarder struct {
	db                *sql.DB
	ctx               context.Context
	ob                *Outbox
	rec               *bustest.Recorder[placed]
	older             *sql.Tx
	rounds, forwarded atomic.Int64
}

func startForwarder(t *testing.T, opts ...Option) *forwarder {
	t.Helper()
	f := &forwarder{db: outboxtest.DB(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	f.ctx = ctx
	b := bustest.New(t)
	f.rec = bustest.Record[placed](t, b, "billing")
	ob, err := New(f.db, b, append([]Option{WithTable(outboxtest.Table(t, f.db))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	ob.afterRound = func(n int, err error) {
		if err != nil {
			t.Errorf("round: %v", err)
		}
		f.forwarded.Add(int64(n))
		f.rounds.Add(1)
	}
	f.ob = ob
	outboxtest.Forward(t, ob.Forward) // stopped when t ends, before the table is dropped
	if f.older, err = f.db.BeginTx(ctx, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.older.Rollback() })
	return f
}

// An open transaction holds back the events of every transaction that began
// writing after it, even committed ones: forwarding them first would break
// the order when it commits. Once it commits, its events come first.
func TestOpenTransactionHoldsBackLaterEvents(t *testing.T) {
	f := startForwarder(t, WithPollInterval(10*time.Millisecond))
	db, ctx, ob, rec, older := f.db, f.ctx, f.ob, f.rec, f.older
	rounds, forwarded := &f.rounds, &f.forwarded
	if err := Store(ctx, ob, older, placed{Seq: 1}); err != nil {
		t.Fatal(err)
	}
	if err := Store(ctx, ob, db, placed{Seq: 2}); err != nil { // commits at once
		t.Fatal(err)
	}
	from := rounds.Load()
	bustest.Eventually(t, 10*time.Second, func() bool { return rounds.Load() >= from+3 }, "the forwarder ran no rounds")
	if n := forwarded.Load(); n != 0 || rec.Len() != 0 {
		t.Fatalf("%d events forwarded, %d delivered while an older transaction was open; want none", n, rec.Len())
	}
	if err := older.Commit(); err != nil {
		t.Fatal(err)
	}
	got := rec.Wait(t, 2, 10*time.Second)
	if got[0].Seq != 1 || got[1].Seq != 2 {
		t.Errorf("delivered %v, want [{1} {2}]: the older transaction's event first", got)
	}
}

// An older transaction that stores no event holds events back as well, and
// its end notifies nobody: the forwarder looks again on its own while events
// are held back, so they go out soon after it ends, long before the poll
// (an hour here).
func TestHeldBackEventsForwardedWithoutNotification(t *testing.T) {
	f := startForwarder(t, WithPollInterval(time.Hour), WithBackoff(time.Millisecond, 20*time.Millisecond))
	db, ctx, ob, rec, older := f.db, f.ctx, f.ob, f.rec, f.older
	rounds, forwarded := &f.rounds, &f.forwarded
	if _, err := older.ExecContext(ctx, "SELECT pg_current_xact_id()"); err != nil { // takes a transaction ID
		t.Fatal(err)
	}
	if err := Store(ctx, ob, db, placed{Seq: 1}); err != nil { // commits and notifies at once
		t.Fatal(err)
	}
	from := rounds.Load()
	// Without the re-check, the notification's round would be the last
	// before the poll.
	deadline := time.Now().Add(20 * time.Second)
	for tick := time.NewTicker(time.Millisecond); rounds.Load() < from+4; <-tick.C {
		if time.Now().After(deadline) {
			tick.Stop()
			t.Fatalf("the forwarder did not look again at the held-back event: %d rounds since it was stored; %s",
				rounds.Load()-from, activity(t, db))
		}
	}
	if n := forwarded.Load(); n != 0 || rec.Len() != 0 {
		t.Fatalf("%d events forwarded, %d delivered while an older transaction was open; want none", n, rec.Len())
	}
	if err := older.Commit(); err != nil { // stored nothing: no notification
		t.Fatal(err)
	}
	if got := rec.Wait(t, 1, 10*time.Second); got[0].Seq != 1 {
		t.Errorf("delivered %v, want [{1}]", got)
	}
}

// activity describes the server's busy backends, for a failure message.
func activity(t *testing.T, db *sql.DB) string {
	rs, err := db.Query(`SELECT pid, state, coalesce(wait_event_type, ''), coalesce(wait_event, ''), left(query, 80)
FROM pg_stat_activity WHERE state <> 'idle' AND pid <> pg_backend_pid()`)
	if err != nil {
		return "pg_stat_activity: " + err.Error()
	}
	defer rs.Close()
	var sb strings.Builder
	sb.WriteString("busy backends:")
	for rs.Next() {
		var pid int
		var state, wtype, wevent, query string
		if err := rs.Scan(&pid, &state, &wtype, &wevent, &query); err != nil {
			return sb.String() + " " + err.Error()
		}
		fmt.Fprintf(&sb, "\n  %d %s %s/%s %q", pid, state, wtype, wevent, query)
	}
	return sb.String()
}
