package membroker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldbus/herald/transport"
)

// Records expire ttl after their event's last put, and the map lets go of
// them: it holds only the events put within the last ttl.
func TestTrackMapExpires(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	m := NewTrackMap(time.Minute, clock)
	ctx := context.Background()
	for i := range 5000 {
		if err := m.PutDelivery(ctx, transport.Delivery{EventID: fmt.Sprint(i), Handler: "h", State: transport.StateQueued}); err != nil {
			t.Fatal(err)
		}
	}
	advance(30 * time.Second)
	// Event 0 is put again: it lives a minute from now.
	_ = m.PutDelivery(ctx, transport.Delivery{EventID: "0", Handler: "h", State: transport.StateRunning, Attempt: 1})
	if n := m.Len(); n != 5000 {
		t.Fatalf("before the ttl: %d events", n)
	}
	advance(31 * time.Second)
	if n := m.Len(); n != 1 {
		t.Fatalf("after the ttl: %d events, want only the one put again", n)
	}
	if ds, _ := m.Deliveries(ctx, "1"); len(ds) != 0 {
		t.Fatalf("expired event still listed: %+v", ds)
	}
	advance(time.Minute)
	if n := m.Len(); n != 0 || len(m.expiry)-m.expired != 0 {
		t.Fatalf("%d events, %d expiries left", n, len(m.expiry)-m.expired)
	}
	if cap(m.expiry) > 0 && m.expired > 1024 {
		t.Fatalf("the expiry queue was not compacted: %d consumed of %d", m.expired, len(m.expiry))
	}
}

// Records put out of order merge into the later state with the earliest
// times.
func TestTrackMapMergesOutOfOrder(t *testing.T) {
	m := NewTrackMap(time.Minute, nil)
	ctx := context.Background()
	t0 := time.Unix(100, 0)
	put := func(d transport.Delivery) {
		d.EventID, d.Handler = "e", "h"
		if err := m.PutDelivery(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	put(transport.Delivery{State: transport.StateDone, Attempt: 2, Started: t0.Add(3 * time.Second), Finished: t0.Add(4 * time.Second)})
	put(transport.Delivery{State: transport.StateRetrying, Attempt: 1, LastError: "flaky", Started: t0.Add(time.Second)})
	put(transport.Delivery{State: transport.StateQueued, Queued: t0})
	ds, err := m.Deliveries(ctx, "e")
	if err != nil || len(ds) != 1 {
		t.Fatal(ds, err)
	}
	d := ds[0]
	if d.State != transport.StateDone || d.Attempt != 2 || d.LastError != "flaky" || !d.Queued.Equal(t0) || !d.Started.Equal(t0.Add(time.Second)) {
		t.Fatalf("%+v", d)
	}
}
