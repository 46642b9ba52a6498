package transport_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/heraldbus/herald/transport"
)

// A record's JSON names its state and leaves out unknown times; it decodes
// back to the same record; a state outside the five is refused both ways.
func TestDeliveryJSON(t *testing.T) {
	d := transport.Delivery{EventID: "e", Event: "x", Handler: "h", State: transport.StateRetrying, Attempt: 2,
		LastError: "boom", Queued: time.Unix(10, 0).UTC()}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"event_id":"e","event":"x","handler":"h","state":"retrying","attempt":2,"last_error":"boom","queued":"1970-01-01T00:00:10Z"}`
	if string(b) != want {
		t.Fatalf("JSON %s, want %s", b, want)
	}
	var back transport.Delivery
	if err := json.Unmarshal(b, &back); err != nil || back != d {
		t.Fatalf("decoded %+v, %v", back, err)
	}
	if _, err := json.Marshal(transport.Delivery{}); err == nil {
		t.Error("a record without a state encodes")
	}
	if err := json.Unmarshal([]byte(`{"state":"lost"}`), &back); err == nil {
		t.Error("an unknown state decodes")
	}
	if s := transport.DeliveryState(9).String(); s != "DeliveryState(9)" {
		t.Error(s)
	}
}

// Merge is order-independent: whatever order a delivery's records come in,
// the result is the last state with the first times.
func TestMergeIsOrderIndependent(t *testing.T) {
	t0 := time.Unix(100, 0)
	recs := []transport.Delivery{
		{State: transport.StateQueued, Queued: t0},
		{State: transport.StateRunning, Attempt: 1, Started: t0.Add(1)},
		{State: transport.StateRetrying, Attempt: 1, LastError: "a", Started: t0.Add(1)},
		{State: transport.StateRunning, Attempt: 2, Started: t0.Add(3)},
		{State: transport.StateDone, Attempt: 2, Started: t0.Add(3), Finished: t0.Add(4)},
	}
	perms := [][]int{{0, 1, 2, 3, 4}, {4, 3, 2, 1, 0}, {2, 4, 0, 3, 1}, {3, 0, 4, 1, 2}}
	for _, p := range perms {
		m := recs[p[0]]
		for _, i := range p[1:] {
			m = m.Merge(recs[i])
		}
		if m.State != transport.StateDone || m.Attempt != 2 || m.LastError != "a" || !m.Queued.Equal(t0) || !m.Started.Equal(t0.Add(1)) || !m.Finished.Equal(t0.Add(4)) {
			t.Errorf("order %v: %+v", p, m)
		}
	}
}

// Records of one delivery, written by several processes, arrive in any
// order; Merge keeps the latest state and the earliest times.
func ExampleDelivery_Merge() {
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	done := transport.Delivery{Handler: "billing", State: transport.StateDone, Attempt: 2, Started: t0.Add(2 * time.Second)}
	retrying := transport.Delivery{Handler: "billing", State: transport.StateRetrying, Attempt: 1, LastError: "card declined", Started: t0.Add(time.Second)}
	queued := transport.Delivery{Handler: "billing", State: transport.StateQueued, Queued: t0}
	d := done.Merge(queued).Merge(retrying)
	fmt.Println(d.State, d.Attempt, d.LastError, d.Queued.Format(time.TimeOnly), d.Started.Format(time.TimeOnly))
	// Output: done 2 card declined 09:00:00 09:00:01
}
