package main

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/heraldbus/herald/bus"
)

// QuoteRequest asks the pricing handler for the price of Qty of Item
// (request/reply: bus.Request, answered by bus.Handle).
type QuoteRequest struct {
	Item string `json:"item"`
	Qty  int    `json:"qty"`
}

// EventName names the request on the bus.
func (QuoteRequest) EventName() string { return "jobs.QuoteRequest" }

// Quote is the pricing handler's answer. An item it does not sell is an
// answer too (Found false), not an error: a handler's error means pricing
// failed.
type Quote struct {
	Item       string `json:"item"`
	Qty        int    `json:"qty"`
	Found      bool   `json:"found"`
	UnitCents  int64  `json:"unit_cents,omitempty"`
	TotalCents int64  `json:"total_cents,omitempty"`
}

// priceList is what the pricing handler sells, in cents.
var priceList = map[string]int64{"widget": 250, "gadget": 1299, "gizmo": 4999}

// maxQty bounds the quantity of a quote.
const maxQty = 10_000

// price is the pricing handler.
func price(_ context.Context, q QuoteRequest) (Quote, error) {
	unit, ok := priceList[q.Item]
	if !ok {
		return Quote{Item: q.Item, Qty: q.Qty}, nil
	}
	return Quote{Item: q.Item, Qty: q.Qty, Found: true, UnitCents: unit, TotalCents: unit * int64(q.Qty)}, nil
}

// getQuote answers GET /quote?item=widget&qty=3 by asking the pricing
// handler, wherever it runs, and waiting at most cfg.QuoteTimeout. Its
// status codes:
//
//	200  the quote
//	400  a bad query (no item, qty not a number from 1 to maxQty): not asked
//	404  pricing answered that it does not sell the item
//	502  pricing failed (its handler returned an error or panicked: *bus.RemoteError)
//	503  nobody answers quotes (bus.ErrNoResponder), or the service is shutting down; Retry-After
//	504  pricing did not answer within the timeout (context.DeadlineExceeded)
func (a *app) getQuote(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	item := strings.ToLower(strings.TrimSpace(q.Get("item")))
	if item == "" {
		writeError(w, http.StatusBadRequest, "item: missing (try widget, gadget or gizmo)")
		return
	}
	qty := 1
	if s := q.Get("qty"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxQty {
			writeError(w, http.StatusBadRequest, "qty: want a number from 1 to %d, got %q", maxQty, s)
			return
		}
		qty = n
	}
	deadline := time.Now().Add(a.cfg.QuoteTimeout)
	ctx, cancel := context.WithDeadline(r.Context(), deadline)
	defer cancel()
	quote, err := bus.Request[QuoteRequest, Quote](ctx, a.bus, QuoteRequest{Item: item, Qty: qty})
	var remote *bus.RemoteError
	switch {
	// First: past the deadline, whatever came back is too late. The
	// handler's ctx ends at the same deadline, and a failure it reports then
	// is a timeout, not a pricing failure: the clock decides.
	case err != nil && !time.Now().Before(deadline) && r.Context().Err() == nil:
		writeError(w, http.StatusGatewayTimeout, "pricing did not answer within %v", a.cfg.QuoteTimeout)
	case err == nil && !quote.Found:
		writeError(w, http.StatusNotFound, "pricing does not sell %q", item)
	case err == nil:
		writeJSON(w, http.StatusOK, quote)
	case errors.As(err, &remote):
		writeError(w, http.StatusBadGateway, "pricing failed: %s", remote.Message)
	case errors.Is(err, bus.ErrNoResponder):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "no pricing service is running")
	case errors.Is(err, bus.ErrClosed):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "shutting down")
	default:
		writeError(w, http.StatusInternalServerError, "quote: %v", err)
	}
}
