package kafka_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/transport"
)

func poisonRecord(handler string, payload string) transport.PoisonRecord {
	now := time.Now().UTC()
	id := event.NewID()
	return transport.PoisonRecord{ID: event.NewID(), Handler: handler, Payload: []byte(payload),
		Event:    transport.Event{ID: id, Name: "poison.Event", CorrelationID: id, PublishedAt: now},
		Metadata: message.Metadata{"X-Tenant": "acme"}, Error: "boom\nline two", Stack: "goroutine 1",
		Attempts: 3, FirstFailure: now, LastFailure: now}
}

// Records stored by one process are seen by the next call of another; a
// purge (a tombstone) hides the record everywhere; replacing a record keeps
// one.
func TestPoisonAcrossProcesses(t *testing.T) {
	eachBroker(t, func(t *testing.T, b broker) {
		ctx := testCtx(t)
		a, other := started(t, b), started(t, b)
		rec := poisonRecord("poison.h", `{"seq":1}`)
		if err := a.PutPoison(ctx, rec); err != nil {
			t.Fatal(err)
		}
		got, found, err := other.GetPoison(ctx, rec.ID)
		if err != nil || !found {
			t.Fatalf("GetPoison from another process: found %v, %v", found, err)
		}
		if got.Error != rec.Error || string(got.Payload) != string(rec.Payload) || got.Metadata["X-Tenant"] != "acme" ||
			got.Attempts != 3 || !got.FirstFailure.Equal(rec.FirstFailure) || got.Stack != rec.Stack {
			t.Errorf("record read back %+v, stored %+v", got, rec)
		}
		rec.Attempts = 4
		if err := a.PutPoison(ctx, rec); err != nil {
			t.Fatal(err)
		}
		recs, next, err := other.ListPoison(ctx, transport.PoisonQuery{Handler: "poison.h"})
		if err != nil || len(recs) != 1 || recs[0].Attempts != 4 || next != "" {
			t.Fatalf("after a replace: %d records (%+v), next %q, %v", len(recs), recs, next, err)
		}
		found, err = other.DeletePoison(ctx, rec.ID)
		if err != nil || !found {
			t.Fatalf("DeletePoison: %v, %v", found, err)
		}
		if _, found, err := a.GetPoison(ctx, rec.ID); err != nil || found {
			t.Errorf("purged record still found by the other process: %v, %v", found, err)
		}
		if found, err := a.DeletePoison(ctx, rec.ID); err != nil || found {
			t.Errorf("second purge: found %v, %v; want false, nil", found, err)
		}
	})
}

func TestPoisonQueries(t *testing.T) {
	eachBroker(t, func(t *testing.T, b broker) {
		ctx := testCtx(t)
		tr := started(t, b)
		for i := range 6 {
			h := "q.a"
			if i%2 == 1 {
				h = "q.b"
			}
			rec := poisonRecord(h, "{}")
			if i == 4 {
				rec.Event.Name = "other.Event"
			}
			if err := tr.PutPoison(ctx, rec); err != nil {
				t.Fatal(err)
			}
		}
		cases := []struct {
			name string
			q    transport.PoisonQuery
			want int
		}{
			{"all", transport.PoisonQuery{}, 6},
			{"one handler", transport.PoisonQuery{Handler: "q.a"}, 3},
			{"one event", transport.PoisonQuery{Event: "other.Event"}, 1},
			{"handler and event", transport.PoisonQuery{Handler: "q.b", Event: "other.Event"}, 0},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				q, n, pages := tc.q, 0, 0
				q.Limit = 2
				for {
					recs, next, err := tr.ListPoison(ctx, q)
					if err != nil {
						t.Fatal(err)
					}
					n, pages = n+len(recs), pages+1
					if next == "" {
						break
					}
					if len(recs) == 0 {
						t.Fatal("an empty page with a next cursor")
					}
					q.After = next
				}
				if n != tc.want || pages != max(1, (tc.want+1)/2) {
					t.Errorf("%d records in %d pages, want %d in pages of 2", n, pages, tc.want)
				}
			})
		}
		if _, _, err := tr.ListPoison(ctx, transport.PoisonQuery{After: "not-a-cursor"}); !errors.Is(err, transport.ErrInvalidOption) {
			t.Errorf("bad cursor: %v, want ErrInvalidOption", err)
		}
		if err := tr.PutPoison(ctx, transport.PoisonRecord{}); !errors.Is(err, transport.ErrInvalidOption) {
			t.Errorf("record without ID: %v, want ErrInvalidOption", err)
		}
		huge := poisonRecord("q.a", strings.Repeat("x", 4<<20))
		if err := tr.PutPoison(ctx, huge); !errors.Is(err, transport.ErrTooLarge) {
			t.Errorf("record larger than the poison topic's limit: %v, want ErrTooLarge", err)
		}
	})
}
