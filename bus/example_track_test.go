package bus_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldbus/herald/bus"
)

type ReportRequested struct {
	Month string `json:"month"`
}

// A publisher that chooses the event ID can hand it to a client, who polls
// Track until every handler has finished.
func ExampleBus_Track() {
	ctx := context.Background()
	b, _ := bus.New(bus.WithTracking(time.Hour))
	_, _ = bus.Subscribe(b, "reports.render", func(ctx context.Context, e ReportRequested) error {
		return nil // render the report
	})
	_ = b.Start(ctx)
	defer b.Close(ctx)

	_ = bus.Publish(ctx, b, ReportRequested{Month: "2026-11"}, bus.WithMessageID("report-2026-11"))
	for {
		tr, err := b.Track(ctx, "report-2026-11")
		if err != nil {
			panic(err)
		}
		if tr.Finished() {
			for _, d := range tr.Handlers {
				fmt.Println(tr.Event, d.Handler, d.State, "at attempt", d.Attempt)
			}
			break
		}
		time.Sleep(10 * time.Millisecond) // a client polls
	}
	// Output: bus_test.ReportRequested reports.render done at attempt 1
}

type PriceQuery struct {
	SKU string `json:"sku"`
}

type PriceAnswer struct {
	Cents int64 `json:"cents"`
}

// One handler answers a request type; any bus on the transport asks it.
func ExampleRequest() {
	ctx := context.Background()
	b, _ := bus.New()
	_, _ = bus.Handle(b, "pricing", func(ctx context.Context, q PriceQuery) (PriceAnswer, error) {
		if q.SKU == "" {
			return PriceAnswer{}, errors.New("empty SKU")
		}
		return PriceAnswer{Cents: 1250}, nil
	})
	_ = b.Start(ctx)
	defer b.Close(ctx)

	ctx, cancel := context.WithTimeout(ctx, time.Second) // the handler's ctx ends then too
	defer cancel()
	p, err := bus.Request[PriceQuery, PriceAnswer](ctx, b, PriceQuery{SKU: "tea"})
	fmt.Println(p.Cents, err)

	_, err = bus.Request[PriceQuery, PriceAnswer](ctx, b, PriceQuery{})
	var re *bus.RemoteError
	fmt.Println(errors.As(err, &re), re.Handler, re.Message)

	_, err = bus.Request[OrderPlaced, PriceAnswer](ctx, b, OrderPlaced{ID: "o-1"})
	fmt.Println(errors.Is(err, bus.ErrNoResponder))
	// Output:
	// 1250 <nil>
	// true pricing empty SKU
	// true
}
