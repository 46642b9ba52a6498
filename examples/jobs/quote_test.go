package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"
)

// GET /quote asks the pricing handler by request/reply: its answer, a bad
// query, an item it does not sell, and a failing handler, on every
// transport.
func TestQuote(t *testing.T) {
	forEachTransport(t, func(t *testing.T, cfg config) {
		cfg.pricingHook = func(_ context.Context, q QuoteRequest) error {
			if q.Item == "broken" {
				return errors.New("price list unavailable")
			}
			return nil
		}
		e := start(t, cfg)
		code, _, data := e.do(http.MethodGet, "/quote?item=Widget&qty=3", "", nil)
		var q Quote
		if err := json.Unmarshal(data, &q); err != nil || code != http.StatusOK ||
			q != (Quote{Item: "widget", Qty: 3, Found: true, UnitCents: 250, TotalCents: 750}) {
			t.Errorf("GET /quote: %d %s", code, data)
		}
		for _, c := range []struct {
			query string
			code  int
			want  string
		}{
			{"", http.StatusBadRequest, "item: missing"},
			{"?item=widget&qty=0", http.StatusBadRequest, `qty: want a number from 1 to 10000, got "0"`},
			{"?item=widget&qty=many", http.StatusBadRequest, `got "many"`},
			{"?item=sprocket", http.StatusNotFound, `pricing does not sell "sprocket"`},
			{"?item=broken", http.StatusBadGateway, "pricing failed: price list unavailable"},
		} {
			e.expectError(http.MethodGet, "/quote"+c.query, "", nil, c.code, c.want)
		}
	})
}

// Pricing that does not answer in time: 504, and the handler's ctx ends at
// the requester's deadline.
func TestQuoteTimeout(t *testing.T) {
	forEachTransport(t, func(t *testing.T, cfg config) {
		cfg.QuoteTimeout = 200 * time.Millisecond
		ended := make(chan error, 1)
		cfg.pricingHook = func(ctx context.Context, _ QuoteRequest) error {
			<-ctx.Done()
			ended <- ctx.Err()
			return ctx.Err()
		}
		e := start(t, cfg)
		e.expectError(http.MethodGet, "/quote?item=gizmo", "", nil, http.StatusGatewayTimeout, "pricing did not answer within 200ms")
		select {
		case err := <-ended:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("the handler's ctx ended with %v", err)
			}
		case <-time.After(testTimeout):
			t.Fatal("the handler's ctx did not end")
		}
	})
}

// Nobody answers quotes: 503 at once, with Retry-After.
func TestQuoteNoResponder(t *testing.T) {
	forEachTransport(t, func(t *testing.T, cfg config) {
		cfg.NoPricing = true
		e := start(t, cfg)
		begin := time.Now()
		e.expectError(http.MethodGet, "/quote?item=gizmo", "", nil, http.StatusServiceUnavailable, "no pricing service is running")
		if d := time.Since(begin); d >= cfg.QuoteTimeout {
			t.Errorf("503 after %v: the timeout, not an answer", d)
		}
		_, h, _ := e.do(http.MethodGet, "/quote?item=gizmo", "", nil)
		if h.Get("Retry-After") == "" {
			t.Error("no Retry-After")
		}
	})
}
