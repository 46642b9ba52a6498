package nats_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
)

// Over NATS, as in memory (bus/encodable_test.go), an event JSON could not
// carry to a handler is refused at Publish or Subscribe with ErrInvalidEvent.

type Reading struct {
	Value json.Number `json:"value"`
}

func (Reading) EventName() string { return "herald_test.Reading" }

type Labelled struct {
	Label fmt.Stringer `json:"label"`
}

func (Labelled) EventName() string { return "herald_test.Labelled" }

type Chain struct {
	Next *Chain `json:"next,omitempty"`
}

func (Chain) EventName() string { return "herald_test.Chain" }

func TestUndeliverableEventsAreRefused(t *testing.T) {
	eachBroker(t, func(t *testing.T, br broker) {
		b := newBus(t, br)
		r := bustest.Record[Reading](t, b, "readings")
		ctx := testCtx(t)
		if err := bus.Publish(ctx, b, Reading{Value: "not-a-number"}); !errors.Is(err, bus.ErrInvalidEvent) {
			t.Errorf("invalid json.Number: %v", err)
		}
		if err := bus.Publish[*Reading](ctx, b, nil); !errors.Is(err, bus.ErrInvalidEvent) {
			t.Errorf("nil *E: %v", err)
		}
		if _, err := bus.Subscribe(b, "labels", func(_ context.Context, _ Labelled) error { return nil }); !errors.Is(err, bus.ErrInvalidEvent) {
			t.Errorf("Subscribe to an event with a fmt.Stringer field: %v", err)
		}
		var deep *Chain
		for range 10001 {
			deep = &Chain{Next: deep}
		}
		if err := bus.Publish(ctx, b, deep); !errors.Is(err, bus.ErrInvalidEvent) {
			t.Errorf("10001 levels: %v", err)
		}
		if err := bus.Publish(ctx, b, Reading{Value: "1.5e3"}); err != nil {
			t.Fatal(err)
		}
		if got := r.Wait(t, 1, wait); got[0].Value != "1.5e3" {
			t.Errorf("got %+v", got)
		}
	})
}
