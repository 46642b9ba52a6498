package benchmarks

import (
	"context"
	"database/sql"
	"sync"
	"testing"
	"time"

	heraldnats "github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/outbox"
	"github.com/heraldbus/herald/outbox/outboxtest"
)

// BenchmarkOutbox compares publishing through the Postgres outbox (Store in
// a transaction of its own per event, committed, then forwarded by one
// forwarder) with a direct bus.Publish, on memory and on NATS (embedded
// server), one handler:
//
//   - throughput: 4 writers publish (or store and commit) events; the clock
//     stops when the handler has received them all. Reports events/s.
//   - latency: one event at a time; from just before Publish (or the
//     transaction's begin) to the handler's call. Reports p50, p99, p99.9.
//
// It needs POSTGRES_URL (skipped without it, failed under CI=true).
func BenchmarkOutbox(b *testing.B) {
	db := outboxtest.DB(b)
	db.SetMaxOpenConns(16)
	events, samples := 20000, 2000
	if quick() {
		events, samples = 1000, 100
	}
	for _, tr := range []string{"memory", "nats"} {
		for _, path := range []string{"direct", "outbox"} {
			b.Run(tr+"/throughput/"+path, func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					c := newCounter(events)
					publish := outboxRig(b, db, tr, path, func(BenchEvent) { c.hit() })
					b.StartTimer()
					const writers = 4
					var wg sync.WaitGroup
					for w := range writers {
						wg.Go(func() {
							for i := w; i < events; i += writers {
								publish(newEvent(i))
							}
						})
					}
					wg.Wait()
					c.wait(b, 2*time.Minute)
				}
				reportThroughput(b, events*b.N, 1)
			})
			b.Run(tr+"/latency/"+path, func(b *testing.B) {
				lat := newLatencies(samples * b.N)
				for b.Loop() {
					b.StopTimer()
					got := make(chan struct{}, 1)
					publish := outboxRig(b, db, tr, path, func(BenchEvent) { got <- struct{}{} })
					b.StartTimer()
					for i := range samples {
						start := time.Now()
						publish(newEvent(i))
						<-got
						lat.add(time.Since(start))
					}
				}
				lat.report(b)
			})
		}
	}
}

// outboxRig starts a bus on a transport of tr with one handler calling fn,
// and, for path "outbox", an outbox on a table of its own with a forwarder;
// everything stops when b ends. It returns the publish function of path.
func outboxRig(b *testing.B, db *sql.DB, tr, path string, fn func(BenchEvent)) func(BenchEvent) {
	b.Helper()
	ctx := context.Background()
	opts := []bus.Option{}
	if tr == "nats" {
		srv := natstest.New(b)
		t, err := heraldnats.New(heraldnats.Config{URL: srv.URL()})
		if err != nil {
			b.Fatal(err)
		}
		opts = append(opts, bus.WithTransport(t))
	}
	hb, err := bus.New(opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := hb.Close(cctx); err != nil {
			b.Error(err)
		}
	})
	subscribeAndStart(b, hb, 1, fn)
	if path == "direct" {
		return func(e BenchEvent) {
			if err := bus.Publish(ctx, hb, e); err != nil {
				b.Error(err)
			}
		}
	}
	ob, err := outbox.New(db, hb, outbox.WithTable(outboxtest.Table(b, db)), outbox.WithBatchSize(500),
		outbox.WithErrorHandler(func(err error) { b.Logf("forwarder: %v", err) }))
	if err != nil {
		b.Fatal(err)
	}
	if err := ob.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ob.Forward(fctx) }()
	b.Cleanup(func() { // before the bus closes (cleanups run last first)
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	return func(e BenchEvent) {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			b.Error(err)
			return
		}
		if err := outbox.Store(ctx, ob, tx, e); err != nil {
			_ = tx.Rollback()
			b.Error(err)
			return
		}
		if err := tx.Commit(); err != nil {
			b.Error(err)
		}
	}
}
