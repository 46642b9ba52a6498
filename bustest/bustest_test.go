package bustest_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type Ping struct{ N int }

func TestRecorderWaitAndMetadata(t *testing.T) {
	b := bustest.New(t)
	rec := bustest.Record[Ping](t, b, "pings")
	for i := range 3 {
		if err := bus.Publish(context.Background(), b, Ping{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	got := rec.Wait(t, 3, 5*time.Second)
	if len(got) != 3 || got[2].N != 2 || rec.Metadata()[0].Handler != "pings" {
		t.Errorf("got %v %v", got, rec.Metadata())
	}
}

func TestWaitForHonoursItsDeadline(t *testing.T) {
	rec := &bustest.Recorder[Ping]{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if evs, err := rec.WaitFor(ctx, 1); err == nil || len(evs) != 0 {
		t.Errorf("WaitFor on no events: %v %v", evs, err)
	}
}

func ExampleRecord() {
	// func TestBilling(t *testing.T) {
	//	b := bustest.New(t)                                  // started; closed at cleanup
	//	rec := bustest.Record[OrderPlaced](t, b, "billing")  // a recording handler
	//	_ = bus.Publish(ctx, b, OrderPlaced{ID: "o-1"})
	//	got := rec.Wait(t, 1, 5*time.Second)                // no sleeps
	// }
}
