package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald/adapters/memory"
	hnats "github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/outbox"
	"github.com/heraldbus/herald/outbox/outboxtest"
	"github.com/heraldbus/herald/transport"
)

type OrderPlaced struct {
	ID  string `json:"id"`
	Seq int    `json:"seq"`
}

func (OrderPlaced) EventName() string { return "outbox_test.OrderPlaced" }

type OrderShipped struct {
	OrderID string `json:"order_id"`
}

func (OrderShipped) EventName() string { return "outbox_test.OrderShipped" }

const wait = 30 * time.Second

func testCtx(t *testing.T) context.Context { return bustest.Context(t, wait) }

// eachTransport runs fn on a memory bus and on a NATS bus (embedded server),
// as subtests. The bus is not started: fn subscribes, then starts it.
func eachTransport(t *testing.T, fn func(t *testing.T, b *bus.Bus)) {
	t.Run("memory", func(t *testing.T) {
		fn(t, newBus(t, memory.New()))
	})
	t.Run("nats", func(t *testing.T) {
		srv := natstest.New(t)
		tr, err := hnats.New(hnats.Config{URL: srv.URL()})
		if err != nil {
			t.Fatal(err)
		}
		fn(t, newBus(t, tr))
	})
}

// newBus returns a bus owning tr, closed when t ends; the test starts it.
func newBus(t *testing.T, tr transport.Transport) *bus.Bus {
	t.Helper()
	b, err := bus.New(bus.WithTransport(tr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Close(ctx)
	})
	return b
}

// newOutbox returns an outbox on a migrated table of the test's own.
func newOutbox(t *testing.T, db *sql.DB, b *bus.Bus, opts ...outbox.Option) *outbox.Outbox {
	t.Helper()
	opts = append([]outbox.Option{outbox.WithTable(outboxtest.Table(t, db)),
		outbox.WithErrorHandler(func(err error) { t.Logf("forwarder: %v", err) })}, opts...)
	ob, err := outbox.New(db, b, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Migrate(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	return ob
}

// storeTx stores events in one transaction and commits it, or rolls it back.
func storeTx(t *testing.T, ctx context.Context, db *sql.DB, ob *outbox.Outbox, commit bool, events ...OrderPlaced) {
	t.Helper()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if err := outbox.Store(ctx, ob, tx, e); err != nil {
			_ = tx.Rollback()
			t.Fatalf("store %v: %v", e, err)
		}
	}
	if commit {
		err = tx.Commit()
	} else {
		err = tx.Rollback()
	}
	if err != nil {
		t.Fatal(err)
	}
}

func ids(events []OrderPlaced) string {
	s := make([]string, len(events))
	for i, e := range events {
		s[i] = e.ID
	}
	return strings.Join(s, ",")
}

// A rolled-back transaction publishes nothing; a committed one, its events
// exactly once to every handler, in the order they were stored.
func TestRollbackPublishesNothingCommitPublishesOnce(t *testing.T) {
	db := outboxtest.DB(t)
	eachTransport(t, func(t *testing.T, b *bus.Bus) {
		ctx := testCtx(t)
		billing := bustest.Record[OrderPlaced](t, b, "billing")
		shipping := bustest.Record[OrderPlaced](t, b, "shipping")
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		ob := newOutbox(t, db, b)
		outboxtest.Forward(t, ob.Forward)

		storeTx(t, ctx, db, ob, false, OrderPlaced{ID: "rolled-back"})
		storeTx(t, ctx, db, ob, true, OrderPlaced{ID: "o-1"}, OrderPlaced{ID: "o-2"})
		// A last committed event: once it arrived, everything before it has.
		storeTx(t, ctx, db, ob, true, OrderPlaced{ID: "o-3"})
		for _, rec := range []*bustest.Recorder[OrderPlaced]{billing, shipping} {
			rec.Wait(t, 3, wait)
		}
		bustest.Eventually(t, wait, func() bool { return outboxtest.Count(t, db, ob.Table()) == 0 }, "the outbox table was not emptied")
		for name, rec := range map[string]*bustest.Recorder[OrderPlaced]{"billing": billing, "shipping": shipping} {
			if got := ids(rec.Events()); got != "o-1,o-2,o-3" {
				t.Errorf("%s got %s, want o-1,o-2,o-3 (once each, nothing rolled back)", name, got)
			}
		}
	})
}

// A stored event carries the metadata Publish would give it: stored from a
// handler's context, it is a consequence of the event being handled.
func TestStoreInHandlerKeepsCorrelation(t *testing.T) {
	db := outboxtest.DB(t)
	eachTransport(t, func(t *testing.T, b *bus.Bus) {
		ctx := testCtx(t)
		var ob *outbox.Outbox
		_, err := bus.Subscribe(b, "shipping", func(ctx context.Context, e OrderPlaced) error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer func() { _ = tx.Rollback() }()
			if err := outbox.Store(ctx, ob, tx, OrderShipped{OrderID: e.ID}, bus.WithMetadata("k", "v")); err != nil {
				return err
			}
			return tx.Commit()
		})
		if err != nil {
			t.Fatal(err)
		}
		shipped := bustest.Record[OrderShipped](t, b, "notify")
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		ob = newOutbox(t, db, b)
		outboxtest.Forward(t, ob.Forward)

		if err := bus.Publish(ctx, b, OrderPlaced{ID: "o-1"}, bus.WithMessageID("placed-1"), bus.WithCorrelationID("corr-1")); err != nil {
			t.Fatal(err)
		}
		got := shipped.Wait(t, 1, wait)
		md := shipped.Metadata()[0]
		if got[0].OrderID != "o-1" || md.CausationID != "placed-1" || md.CorrelationID != "corr-1" || md.ID == "" || md.ID == "placed-1" {
			t.Errorf("got %+v with id %q causation %q correlation %q; want o-1, a new ID, causation placed-1, correlation corr-1",
				got[0], md.ID, md.CausationID, md.CorrelationID)
		}
	})
}

// Bad input: invalid options and events are refused with errors testable
// with errors.Is, before anything touches the database.
func TestInvalidInput(t *testing.T) {
	b, err := bus.New()
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("pgx", "postgres://nobody@127.0.0.1:1/none")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range []struct {
		name string
		opt  outbox.Option
	}{
		{"nil option", nil},
		{"empty table", outbox.WithTable("")},
		{"upper case", outbox.WithTable("Outbox")},
		{"three parts", outbox.WithTable("a.b.c")},
		{"injection", outbox.WithTable("outbox; DROP TABLE x")},
		{"long", outbox.WithTable(strings.Repeat("a", 51))},
		{"batch 0", outbox.WithBatchSize(0)},
		{"batch too large", outbox.WithBatchSize(outbox.MaxBatchSize + 1)},
		{"poll too short", outbox.WithPollInterval(time.Millisecond)},
		{"backoff reversed", outbox.WithBackoff(time.Second, time.Millisecond)},
		{"nil error handler", outbox.WithErrorHandler(nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := outbox.New(db, b, tc.opt); !errors.Is(err, transport.ErrInvalidOption) || !strings.HasPrefix(err.Error(), "herald/outbox: ") {
				t.Errorf("New: %v, want herald/outbox: ... ErrInvalidOption", err)
			}
		})
	}
	if _, err := outbox.New(nil, b); !errors.Is(err, bus.ErrInvalidOption) {
		t.Errorf("New(nil db): %v, want ErrInvalidOption", err)
	}
	if _, err := outbox.MigrationSQL("x.Y"); !errors.Is(err, bus.ErrInvalidOption) {
		t.Errorf("MigrationSQL(x.Y): %v, want ErrInvalidOption", err)
	}
	ob, err := outbox.New(db, b, outbox.WithTable("s.t"))
	if err != nil {
		t.Fatal(err)
	}
	// The database is unreachable: these must fail before using it.
	if err := outbox.Store(context.Background(), ob, db, (*OrderPlaced)(nil)); !errors.Is(err, bus.ErrInvalidEvent) {
		t.Errorf("Store(nil pointer): %v, want ErrInvalidEvent", err)
	}
	if err := outbox.Store(context.Background(), ob, nil, OrderPlaced{}); err == nil {
		t.Error("Store(nil tx): nil error")
	}
	if err := outbox.Store(context.Background(), ob, db, OrderPlaced{}, nil); !errors.Is(err, bus.ErrInvalidOption) {
		t.Errorf("Store(nil option): %v, want ErrInvalidOption", err)
	}
}

// Migrate is idempotent and concurrent calls do not collide; the SQL
// creates the table in its schema.
func TestMigrateTwiceConcurrently(t *testing.T) {
	db := outboxtest.DB(t)
	b, err := bus.New()
	if err != nil {
		t.Fatal(err)
	}
	table := outboxtest.Table(t, db)
	ob, err := outbox.New(db, b, outbox.WithTable(table))
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- ob.Migrate(testCtx(t)) }()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Errorf("Migrate: %v", err)
		}
	}
	if n := outboxtest.Count(t, db, table); n != 0 {
		t.Errorf("new table holds %d rows", n)
	}
	ddl, err := outbox.MigrationSQL(table)
	if err != nil || !strings.Contains(ddl, "CREATE SCHEMA IF NOT EXISTS "+strings.Split(table, ".")[0]) {
		t.Errorf("MigrationSQL: %v\n%s", err, ddl)
	}
}

// Two forwarders on one table forward 10,000 events stored in 100
// transactions: each event once (the memory transport does not deduplicate,
// so a double publish would show), in the order stored, none left behind.
func TestTwoForwarders10k(t *testing.T) {
	db := outboxtest.DB(t)
	ctx := testCtx(t)
	b := newBus(t, memory.New(memory.WithBufferSize(20000)))
	rec := bustest.Record[OrderPlaced](t, b, "billing")
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ob := newOutbox(t, db, b, outbox.WithBatchSize(50))
	outboxtest.Forward(t, ob.Forward)
	outboxtest.Forward(t, ob.Forward)
	const txs, per = 100, 100
	for i := range txs {
		evs := make([]OrderPlaced, per)
		for j := range evs {
			evs[j] = OrderPlaced{ID: fmt.Sprint(i*per + j), Seq: i*per + j}
		}
		storeTx(t, ctx, db, ob, true, evs...)
	}
	rec.Wait(t, txs*per, wait)
	bustest.Eventually(t, wait, func() bool { return outboxtest.Count(t, db, ob.Table()) == 0 }, "events were left in the outbox")
	got := rec.Events()
	if len(got) != txs*per {
		t.Fatalf("got %d deliveries, want %d (an event published twice)", len(got), txs*per)
	}
	for i, e := range got {
		if e.Seq != i {
			t.Fatalf("delivery %d is event %d: out of order or duplicated", i, e.Seq)
		}
	}
}

// An event the transport refuses for good (here: larger than the NATS
// transport's MaxPayload, though within the bus's limit) does not hold back
// the events behind it forever: it is moved to <table>_dead with the error,
// and the others are forwarded in order.
func TestRefusedEventMovedAside(t *testing.T) {
	db := outboxtest.DB(t)
	srv := natstest.New(t)
	tr, err := hnats.New(hnats.Config{URL: srv.URL(), MaxPayload: 4096})
	if err != nil {
		t.Fatal(err)
	}
	b := newBus(t, tr)
	ctx := testCtx(t)
	rec := bustest.Record[OrderPlaced](t, b, "billing")
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var refusals atomic.Int32
	ob := newOutbox(t, db, b, outbox.WithErrorHandler(func(err error) {
		if errors.Is(err, transport.ErrTooLarge) {
			refusals.Add(1)
		}
	}))
	outboxtest.Forward(t, ob.Forward)
	storeTx(t, ctx, db, ob, true, OrderPlaced{ID: "o-1"}, OrderPlaced{ID: strings.Repeat("x", 8192)}, OrderPlaced{ID: "o-3"})
	rec.Wait(t, 2, wait)
	if got := ids(rec.Events()); got != "o-1,o-3" {
		t.Errorf("handled %s, want o-1,o-3", got)
	}
	bustest.Eventually(t, wait, func() bool { return outboxtest.Count(t, db, ob.Table()) == 0 }, "the outbox table was not emptied")
	if n := outboxtest.Count(t, db, ob.Table()+"_dead"); n != 1 {
		t.Errorf("%d rows in %s_dead, want the refused one", n, ob.Table())
	}
	var reason string
	if err := db.QueryRowContext(ctx, "SELECT error FROM "+ob.Table()+"_dead").Scan(&reason); err != nil || !strings.Contains(reason, "too large") {
		t.Errorf("dead row's error %q, %v", reason, err)
	}
	if refusals.Load() == 0 {
		t.Error("the error handler never heard of the refusal")
	}
}
