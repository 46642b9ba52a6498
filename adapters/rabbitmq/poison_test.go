package rabbitmq_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/adapters/rabbitmq/rabbitmqtest"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/transport"
)

func record(id, handler string) transport.PoisonRecord {
	now := time.Now().UTC()
	return transport.PoisonRecord{ID: id, Handler: handler, Payload: []byte("{\"a\":\"line\\nfeed\"}\n\x00raw"),
		Event:    transport.Event{ID: "ev-" + id, Name: "rabbit.Tested", CorrelationID: "ev-" + id, PublishedAt: now},
		Metadata: message.Metadata{"X-Tenant": "acme"}, Error: "boom", Stack: "goroutine 1", Attempts: 3, FirstFailure: now, LastFailure: now}
}

// Poison records live in the broker's stream: a record stored by one process
// is read back whole by another (payload bytes as they were), a deletion by
// one is seen by the other, and the first of two racing deletions is the one
// that finds the record. A process started later reads every record kept.
func TestPoisonAcrossProcesses(t *testing.T) {
	br := rabbitmqtest.New(t)
	a, b := started(t, br), started(t, br)
	ctx := ctxFor(t, 30*time.Second)
	if _, _, err := b.ListPoison(ctx, transport.PoisonQuery{}); err != nil { // b's index is running
		t.Fatal(err)
	}
	want := record("rec-1", "h.one")
	if err := a.PutPoison(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, found, err := b.GetPoison(ctx, "rec-1")
	if err != nil || !found {
		t.Fatalf("GetPoison in the other process: %v %v", found, err)
	}
	if string(got.Payload) != string(want.Payload) || got.Error != "boom" || got.Stack != "goroutine 1" ||
		got.Metadata["X-Tenant"] != "acme" || got.Attempts != 3 || got.Event.ID != "ev-rec-1" || !got.LastFailure.Equal(want.LastFailure) {
		t.Errorf("read back %+v\nwant %+v", got, want)
	}
	bustest.Eventually(t, 10*time.Second, func() bool {
		recs, _, err := b.ListPoison(ctx, transport.PoisonQuery{Handler: "h.one"})
		return err == nil && len(recs) == 1
	}, "the other process lists the record")

	found1, err1 := a.DeletePoison(ctx, "rec-1")
	found2, err2 := b.DeletePoison(ctx, "rec-1")
	if err1 != nil || err2 != nil || !found1 || found2 {
		t.Errorf("two deletions: (%v, %v) and (%v, %v), want the first to find it", found1, err1, found2, err2)
	}
	if _, found, err := a.GetPoison(ctx, "rec-1"); found || err != nil {
		t.Errorf("GetPoison after delete: %v %v", found, err)
	}

	for i := range 5 {
		if err := a.PutPoison(ctx, record(fmt.Sprint("later-", i), "h.two")); err != nil {
			t.Fatal(err)
		}
	}
	c := started(t, br) // a process that comes later
	var ids []string
	q := transport.PoisonQuery{Handler: "h.two", Limit: 2}
	for {
		recs, next, err := c.ListPoison(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			ids = append(ids, r.ID)
		}
		if next == "" {
			break
		}
		q.After = next
	}
	if fmt.Sprint(ids) != "[later-0 later-1 later-2 later-3 later-4]" {
		t.Errorf("a later process listed %v", ids)
	}
	if _, _, err := c.ListPoison(ctx, transport.PoisonQuery{After: "not-an-offset"}); !errors.Is(err, transport.ErrInvalidOption) {
		t.Errorf("bad cursor: %v", err)
	}
}
