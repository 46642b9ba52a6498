package faults_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/transport"
)

// A poison queue of 70,000 records (a night of a failing dependency): listing
// it with a ctx that has no deadline used to fail after RequestTimeout, which
// bounded the whole listing rather than each request; ReplayAll failed the
// same way. Now every page is one bounded request: List goes through all of
// them, and ReplayAll streams a handler's records page by page.
func TestLargePoisonQueue(t *testing.T) {
	const bulk, replayed = 68_000, 2_000
	eachBackend(t, func(t *testing.T, be *backend) {
		b, tr := be.unstartedBus(t)
		ps := tr.(transport.PoisonStore)
		r := newTally()
		if _, err := bus.Subscribe(b, "list.replayed", r.handler(nil)); err != nil {
			t.Fatal(err)
		}
		if err := b.Start(ctxFor(t, wait)); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = b.Close(ctxFor(t, wait)) }()

		begin := time.Now()
		putRecords(t, ps, "list.bulk", 0, bulk)
		putRecords(t, ps, "list.replayed", bulk, replayed)
		stored := time.Since(begin)

		begin = time.Now()
		all, err := b.Poison().List(context.Background(), "") // no deadline: each page is bounded
		listed := time.Since(begin)
		if err != nil || len(all) != bulk+replayed {
			t.Fatalf("List of %d records: %d, %v", bulk+replayed, len(all), err)
		}
		begin = time.Now()
		n, err := b.Poison().ReplayAll(context.Background(), "list.replayed")
		if err != nil || n != replayed {
			t.Fatalf("ReplayAll = %d, %v; want %d", n, err, replayed)
		}
		r.waitDistinct(t, replayed, wait, "every replayed record handled")
		replayTook := time.Since(begin)
		left, err := b.Poison().List(context.Background(), "list.replayed")
		if err != nil || len(left) != 0 {
			t.Errorf("%d records of list.replayed left after ReplayAll, %v", len(left), err)
		}

		f := figures{fault: "11-poison-70k", transport: be.name, handlers: 1, sent: replayed, delivered: r.distinct(), dups: r.duplicates()}
		f.add("records", bulk+replayed)
		f.add("store_took", stored)
		f.add("list_all_took", listed)
		f.add("replay_all_took", replayTook)
		f.log(t)
	})
}

// putRecords stores n poison records of handler, from seq on, 8 at a time.
func putRecords(t *testing.T, ps transport.PoisonStore, handler string, from, n int) {
	t.Helper()
	ctx := ctxFor(t, 5*time.Minute)
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 8 {
		wg.Go(func() {
			for {
				seq := int(next.Add(1) - 1)
				if seq >= from+n || failed.Load() != nil {
					return
				}
				now := time.Now()
				id := event.NewID()
				rec := transport.PoisonRecord{ID: event.NewID(), Handler: handler,
					Event:    transport.Event{ID: id, Name: eventName, CorrelationID: id, PublishedAt: now},
					Payload:  fmt.Appendf(nil, `{"seq":%d}`, seq),
					Metadata: message.Metadata{}, Error: "dependency down", Attempts: 5, FirstFailure: now, LastFailure: now}
				if err := ps.PutPoison(ctx, rec); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		t.Fatalf("PutPoison: %v", err)
	}
}
