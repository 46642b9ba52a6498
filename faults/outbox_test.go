package faults_test

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hnats "github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/outbox"
	"github.com/heraldbus/herald/outbox/outboxtest"
)

// ---- outbox faults (20 to 22): the forwarder between Postgres and the bus ----

// outboxOn returns an outbox for b on a migrated table of the test's own;
// errors counts the forwarder's errors.
func outboxOn(t *testing.T, db *sql.DB, b *bus.Bus, errors *atomic.Int64, opts ...outbox.Option) *outbox.Outbox {
	t.Helper()
	opts = append([]outbox.Option{
		outbox.WithTable(outboxtest.Table(t, db)),
		outbox.WithBackoff(20*time.Millisecond, 200*time.Millisecond),
		outbox.WithErrorHandler(func(err error) {
			errors.Add(1)
			if testing.Verbose() {
				t.Logf("forwarder: %v", err)
			}
		}),
	}, opts...)
	ob, err := outbox.New(db, b, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Migrate(ctxFor(t, wait)); err != nil {
		t.Fatal(err)
	}
	return ob
}

// storeEvents stores events from..from+n-1 in transactions of per events.
func storeEvents(t *testing.T, db *sql.DB, ob *outbox.Outbox, from, n, per int) {
	t.Helper()
	ctx := ctxFor(t, wait)
	for i := from; i < from+n; i += per {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for seq := i; seq < min(i+per, from+n); seq++ {
			if err := outbox.Store(ctx, ob, tx, Event{Seq: seq}); err != nil {
				_ = tx.Rollback()
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// blockDeletes locks every row of the outbox (FOR SHARE) until the func
// returned is called: the forwarder can read and publish them, but its
// DELETE waits. It is how a test stops a forwarder between publishing a
// batch and marking it done.
func blockDeletes(t *testing.T, db *sql.DB, ob *outbox.Outbox) (release func()) {
	t.Helper()
	tx, err := db.BeginTx(ctxFor(t, wait), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("SELECT seq FROM " + ob.Table() + " FOR SHARE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if err := tx.Commit(); err != nil {
				t.Errorf("release the rows: %v", err)
			}
		})
	}
	t.Cleanup(release)
	return release
}

// waitBlockedDelete waits until a forwarder's DELETE of ob's rows waits on a
// lock, and returns its backend's pid.
func waitBlockedDelete(t *testing.T, db *sql.DB, ob *outbox.Outbox) int {
	t.Helper()
	var pid int
	bustest.Eventually(t, wait, func() bool {
		err := db.QueryRow(`SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1`,
			"DELETE FROM "+ob.Table()+" %").Scan(&pid)
		return err == nil
	}, "a forwarder's DELETE waiting on the blocked rows")
	return pid
}

// waitListening waits until ob's forwarder listens for notifications.
func waitListening(t *testing.T, db *sql.DB, ob *outbox.Outbox) {
	t.Helper()
	bustest.Eventually(t, wait, func() bool {
		var n int
		err := db.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1`, `LISTEN "`+ob.Channel()+`"%`).Scan(&n)
		return err == nil && n == 1
	}, "the forwarder's listener connected")
}

// terminate drops the connections of the backends whose query is like
// pattern (pg_terminate_backend) and returns how many it dropped.
func terminate(t *testing.T, db *sql.DB, pattern string) int {
	t.Helper()
	var n int
	err := db.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid()`, pattern).Scan(&n)
	if err != nil {
		t.Fatalf("terminate %q: %v", pattern, err)
	}
	return n
}

// lastSeq returns the last sequence of the events stream: how many events it
// ever stored, acknowledged (and removed) or not.
func (be *backend) lastSeq(t testing.TB) uint64 { return be.streamState(t).LastSeq }

// Fault 20: a forwarder dies after publishing a batch and before deleting
// it. Another forwarder publishes the batch again, with the same event IDs:
// on NATS the stream drops the copies (dedup window), so every event is
// delivered once; the memory transport does not deduplicate, so there every
// event of the batch is delivered twice (at least once).
func TestOutboxForwarderKilledBeforeDelete(t *testing.T) {
	db := outboxtest.DB(t)
	eachBackend(t, func(t *testing.T, be *backend) {
		const n = 100
		b := be.bus(t)
		tl := subscribeTally(t, b, "billing", nil)
		var errs atomic.Int64
		ob := outboxOn(t, db, b, &errs, outbox.WithBatchSize(n))
		storeEvents(t, db, ob, 0, n, 10)

		release := blockDeletes(t, db, ob)
		stop1 := outboxtest.Forward(t, ob.Forward)
		tl.waitDistinct(t, n, wait, "the batch published")
		pid := waitBlockedDelete(t, db, ob)
		// The forwarder dies: its connection drops, its process ends.
		if _, err := db.Exec("SELECT pg_terminate_backend($1)", pid); err != nil {
			t.Fatal(err)
		}
		stop1()
		release()
		if left := outboxtest.Count(t, db, ob.Table()); left != n {
			t.Fatalf("%d events in the outbox after the forwarder died, want all %d (none marked done)", left, n)
		}

		start := time.Now()
		outboxtest.Forward(t, ob.Forward)
		bustest.Eventually(t, wait, func() bool { return outboxtest.Count(t, db, ob.Table()) == 0 }, "the second forwarder emptied the outbox")
		if be.isNATS() {
			if stored := be.lastSeq(t); stored != n {
				t.Errorf("the stream stored %d events, want %d: the second publish was not deduplicated", stored, n)
			}
			be.settled(t, "billing")
			if d := tl.duplicates(); d != 0 {
				t.Errorf("%d duplicates on NATS, want 0", d)
			}
		} else {
			tl.waitFor(t, wait, func() bool { // tl is locked: read its map directly
				calls := 0
				for _, k := range tl.calls {
					calls += k
				}
				return calls >= 2*n
			}, "the batch delivered again (memory: no dedup)")
		}
		recovered := time.Since(start)
		tl.check(t, n, "outbox")
		f := figures{fault: "outbox-forwarder-killed", transport: be.name, handlers: 1, sent: n, delivered: tl.distinct(), dups: tl.duplicates(), recover: recovered}
		f.add("republished", n)
		f.log(t)
		if tl.distinct() != n {
			t.Errorf("%d distinct events delivered, want %d", tl.distinct(), n)
		}
	})
}

// Fault 21: NATS is down while events are stored and the forwarder runs. The
// events wait in the outbox (the forwarder backs off), then all arrive, in
// the order stored, once the server is back.
func TestOutboxNATSDown(t *testing.T) {
	db := outboxtest.DB(t)
	be := natsBackend(t, func(c *hnats.Config) { c.PubAckTimeout = 500 * time.Millisecond })
	const n = 300
	b := be.bus(t)
	var mu sync.Mutex
	var order []int
	tl := subscribeTally(t, b, "billing", func(_ context.Context, e Event, call int) error {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, e.Seq)
		return nil
	}, bus.WithConcurrency(1))
	var errs atomic.Int64
	ob := outboxOn(t, db, b, &errs, outbox.WithBatchSize(50))
	outboxtest.Forward(t, ob.Forward)
	storeEvents(t, db, ob, 0, 10, 10)
	tl.waitDistinct(t, 10, wait, "events before the outage")

	be.srv.Shutdown()
	down := time.Now()
	storeEvents(t, db, ob, 10, n-10, 10)
	bustest.Eventually(t, wait, func() bool { return errs.Load() >= 1 }, "the forwarder failed to publish while NATS was down")
	if left := outboxtest.Count(t, db, ob.Table()); left != n-10 {
		t.Fatalf("%d events in the outbox while NATS is down, want %d", left, n-10)
	}
	if err := be.srv.Restart(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	tl.waitDistinct(t, n, wait, "every event after NATS came back")
	recovered := time.Since(up)
	bustest.Eventually(t, wait, func() bool { return outboxtest.Count(t, db, ob.Table()) == 0 }, "the outbox emptied")
	be.settled(t, "billing")
	tl.check(t, n, "outbox")
	mu.Lock()
	got := append([]int(nil), order...)
	mu.Unlock()
	for i, seq := range got {
		if seq != i {
			t.Fatalf("delivery %d is event %d: out of order or duplicated (first %v)", i, seq, got[:min(len(got), i+3)])
		}
	}
	f := figures{fault: "outbox-nats-down", transport: be.name, handlers: 1, sent: n, delivered: tl.distinct(), dups: tl.duplicates(), recover: recovered}
	f.add("outage", up.Sub(down))
	f.add("forward_errors", errs.Load())
	f.log(t)
}

// Fault 22: Postgres drops the forwarder's connections mid-batch (published,
// not yet deleted), and its listener's. The same forwarder reconnects,
// publishes the batch again (deduplicated on NATS), and its listener comes
// back: events stored after are forwarded on notification alone (the poll
// is an hour).
func TestOutboxPostgresConnectionDropped(t *testing.T) {
	db := outboxtest.DB(t)
	eachBackend(t, func(t *testing.T, be *backend) {
		const first, batch, later = 200, 50, 100
		b := be.bus(t)
		tl := subscribeTally(t, b, "billing", nil)
		var errs atomic.Int64
		ob := outboxOn(t, db, b, &errs, outbox.WithBatchSize(batch), outbox.WithPollInterval(time.Hour))
		storeEvents(t, db, ob, 0, first, 10)
		release := blockDeletes(t, db, ob)
		outboxtest.Forward(t, ob.Forward)
		tl.waitDistinct(t, batch, wait, "the first batch published")
		waitBlockedDelete(t, db, ob)
		waitListening(t, db, ob)

		dropped := terminate(t, db, "DELETE FROM "+ob.Table()+" %")
		dropped += terminate(t, db, `LISTEN "`+ob.Channel()+`"%`)
		if dropped != 2 {
			t.Fatalf("dropped %d connections, want 2 (the forwarder's and its listener's)", dropped)
		}
		start := time.Now()
		release()
		tl.waitDistinct(t, first, wait, "the events stored before the drop")
		storeEvents(t, db, ob, first, later, 10)
		tl.waitDistinct(t, first+later, wait, "the events stored after the drop (notified)")
		recovered := time.Since(start)
		bustest.Eventually(t, wait, func() bool { return outboxtest.Count(t, db, ob.Table()) == 0 }, "the outbox emptied")
		be.settled(t, "billing")
		tl.check(t, first+later, "outbox")
		if be.isNATS() {
			if d := tl.duplicates(); d != 0 {
				t.Errorf("%d duplicates on NATS, want 0", d)
			}
		} else if d := tl.duplicates(); d != batch {
			t.Errorf("%d duplicates on memory, want %d (the batch published again)", d, batch)
		}
		f := figures{fault: "outbox-postgres-dropped", transport: be.name, handlers: 1, sent: first + later, delivered: tl.distinct(), dups: tl.duplicates(), recover: recovered}
		f.add("forward_errors", errs.Load())
		f.log(t)
	})
}
