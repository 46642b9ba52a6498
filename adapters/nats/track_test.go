package nats_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald/adapters/adaptertest"
	"github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/transport"
)

// Event IDs and handler names of any form (dots, wildcards, spaces, unicode,
// up to the 4096 bytes an ID may have) make valid, distinct keys: each ID
// reads back its own records only, merged in order whatever the put order.
func TestTrackingKeysAndMerge(t *testing.T) {
	onTrackStores(t, time.Minute, func(t *testing.T, ctx context.Context, tr *nats.Transport, store transport.DeliveryStore) {
		ids := []string{"plain", "a.b c", "*.>", "é~/=_-", strings.Repeat("x", 96), strings.Repeat("x", 97),
			strings.Repeat("é", 2048), strings.Repeat("é", 2047) + "e"}
		t0 := time.Now().Truncate(time.Millisecond)
		for i, id := range ids {
			// Out of order: done, then queued, then running.
			for _, d := range []transport.Delivery{
				{State: transport.StateDone, Attempt: 1, Finished: t0.Add(3 * time.Second)},
				{State: transport.StateQueued, Queued: t0},
				{State: transport.StateRunning, Attempt: 1, Started: t0.Add(time.Second)},
			} {
				d.EventID, d.Event, d.Handler = id, "orders.placed", "billing.charge"
				if i%2 == 1 {
					d.Handler = "billing.charge.v2"
				}
				if err := store.PutDelivery(ctx, d); err != nil {
					t.Fatalf("put %q: %v", id[:min(len(id), 10)], err)
				}
			}
		}
		for _, id := range ids {
			ds, err := store.Deliveries(ctx, id)
			if err != nil || len(ds) != 1 {
				t.Fatalf("%q...: %+v, %v", id[:min(len(id), 10)], ds, err)
			}
			d := ds[0]
			if d.EventID != id || d.State != transport.StateDone || !d.Queued.Equal(t0) || !d.Started.Equal(t0.Add(time.Second)) {
				t.Errorf("%q...: %+v", id[:min(len(id), 10)], d)
			}
		}
		if ds, err := store.Deliveries(ctx, "unknown"); err != nil || len(ds) != 0 {
			t.Errorf("unknown: %+v, %v", ds, err)
		}
	})
}

// Records expire with the bucket's TTL: the server removes them.
func TestTrackingRecordsExpire(t *testing.T) {
	onTrackStores(t, time.Second, func(t *testing.T, ctx context.Context, tr *nats.Transport, store transport.DeliveryStore) {
		for i := range 10 {
			if err := store.PutDelivery(ctx, transport.Delivery{EventID: "e", Event: "x", Handler: "h", State: transport.StateRunning, Attempt: i + 1}); err != nil {
				t.Fatal(err)
			}
		}
		kv, err := tr.JetStream().KeyValue(ctx, tr.TrackBucket())
		if err != nil {
			t.Fatal(err)
		}
		st, err := kv.Status(ctx)
		if err != nil || st.Values() != 10 || st.TTL() != time.Second || st.History() != 64 {
			t.Fatalf("bucket: %+v, %v", st, err)
		}
		bustest.Eventually(t, 15*time.Second, func() bool {
			st, err := kv.Status(ctx)
			return err == nil && st.Values() == 0
		}, "the server removes expired records")
		if ds, err := store.Deliveries(ctx, "e"); err != nil || len(ds) != 0 {
			t.Errorf("after expiry: %+v, %v", ds, err)
		}
	})
}

// onTrackStores runs fn on every broker with a transport's tracking store of
// ttl and a ctx of 20 seconds.
func onTrackStores(t *testing.T, ttl time.Duration, fn func(t *testing.T, ctx context.Context, tr *nats.Transport, store transport.DeliveryStore)) {
	adaptertest.Each(t, brokers(t), func(t *testing.T, b broker) {
		tr := b.transport(t)
		store, err := tr.DeliveryStore(ttl)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		fn(t, ctx, tr, store)
	})
}

// A tracking bucket that disappears (a server with memory storage restarted,
// or someone deleted it) is created again by the next put.
func TestTrackingBucketCreatedAgain(t *testing.T) {
	onTrackStores(t, time.Minute, func(t *testing.T, ctx context.Context, tr *nats.Transport, store transport.DeliveryStore) {
		put := func(id string) {
			t.Helper()
			if err := store.PutDelivery(ctx, transport.Delivery{EventID: id, Event: "x", Handler: "h", State: transport.StateQueued}); err != nil {
				t.Fatal(err)
			}
		}
		put("before")
		if err := tr.JetStream().DeleteKeyValue(ctx, tr.TrackBucket()); err != nil {
			t.Fatal(err)
		}
		put("after")
		if ds, err := store.Deliveries(ctx, "after"); err != nil || len(ds) != 1 {
			t.Fatalf("after: %+v, %v", ds, err)
		}
		if ds, err := store.Deliveries(ctx, "before"); err != nil || len(ds) != 0 {
			t.Fatalf("before (deleted with its bucket): %+v, %v", ds, err)
		}
	})
}
