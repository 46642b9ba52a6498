package membroker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldbus/herald/transport"
)

// A record lives at least ttl after its last put and is gone by twice that:
// the map lets go of what was not put within the last two ttls.
func TestTrackMapExpires(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	m := NewTrackMap(time.Minute, clock)
	ctx := context.Background()
	put := func(id string) {
		t.Helper()
		if err := m.PutDelivery(ctx, transport.Delivery{EventID: id, Handler: "h", State: transport.StateQueued}); err != nil {
			t.Fatal(err)
		}
	}
	has := func(id string) bool {
		ds, err := m.Deliveries(ctx, id)
		return err == nil && len(ds) == 1
	}
	for i := range 5000 {
		put(fmt.Sprint(i))
	}
	advance(59 * time.Second)
	if n := m.Len(); n != 5000 {
		t.Fatalf("before the ttl: %d events", n)
	}
	advance(62 * time.Second) // 2×ttl after the puts
	if n := m.Len(); n != 0 || has("1") {
		t.Fatalf("after twice the ttl: %d events", n)
	}
	put("late")
	advance(59 * time.Second)
	put("later")
	advance(2 * time.Second) // a new generation: both move to the previous one
	if !has("late") || !has("later") {
		t.Fatal("a record is gone before its ttl")
	}
	put("later") // back in the current generation
	advance(60 * time.Second)
	if has("late") || !has("later") {
		t.Fatalf("late (put 121s ago) kept %v, later (put 60s ago) kept %v", has("late"), has("later"))
	}
	advance(2 * time.Minute)
	if n := m.Len(); n != 0 {
		t.Fatalf("%d events left", n)
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
