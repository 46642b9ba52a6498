package bustest_test

import (
	"context"
	"fmt"
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

// In a test, bustest.New(t) gives a started bus closed at cleanup and
// rec.Wait(t, n, timeout) fails the test on timeout. Outside a test (as in
// this example) the bus is made by hand and WaitFor takes a deadline.
func ExampleRecord() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, _ := bus.New()
	rec := &bustest.Recorder[Ping]{}
	_, _ = bus.Subscribe(b, "pings", rec.Handle)
	_ = b.Start(ctx)
	defer b.Close(ctx)
	for i := range 3 {
		_ = bus.Publish(ctx, b, Ping{N: i})
	}
	got, err := rec.WaitFor(ctx, 3) // no sleeps: returns once 3 have arrived
	fmt.Println(got, err, rec.Metadata()[2].Handler)
	// Output: [{0} {1} {2}] <nil> pings
}

func TestContextEndsAfterItsTimeout(t *testing.T) {
	ctx := bustest.Context(t, 20*time.Millisecond)
	if _, ok := ctx.Deadline(); !ok {
		t.Fatal("no deadline")
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the context did not end after its timeout")
	}
	if ctx.Err() != context.DeadlineExceeded {
		t.Fatalf("Err = %v", ctx.Err())
	}
}
