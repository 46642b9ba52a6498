package testkit_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/internal/testkit"
	"github.com/heraldbus/herald/middleware"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type failed struct{ N int }

// WaitPoison returns once the handler has the records asked for, and only its own.
func TestWaitReturnsTheHandlersRecords(t *testing.T) {
	b := bustest.New(t, bus.WithDefaultRetry(middleware.RetryPolicy{MaxAttempts: 1}))
	if _, err := bus.Subscribe(b, "broken", func(context.Context, failed) error { return errors.New("no") }); err != nil {
		t.Fatal(err)
	}
	bustest.Record[failed](t, b, "fine")
	for i := range 3 {
		if err := bus.Publish(bustest.Context(t, 10*time.Second), b, failed{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	recs := testkit.WaitPoison(t, b, "broken", 3, 10*time.Second)
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	for _, r := range recs {
		if r.Handler != "broken" {
			t.Errorf("record of handler %q", r.Handler)
		}
	}
}
