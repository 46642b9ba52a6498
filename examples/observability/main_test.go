package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldbus/herald/bus"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testWait = 20 * time.Second

// backlogLine is the series of shipping's backlog gauge as Prometheus shows it.
const backlogLine = `herald_handler_backlog{messaging_consumer_group_name="shipping.pack",messaging_destination_name="main.PaymentCaptured",messaging_system="memory"} `

// /metrics, scraped over HTTP, has the backlog series of the held handler
// with its value (2 waiting), which falls to 0 once it is released; /stats
// gives the same through Bus.Stats.
func TestScrapeMetricsFindsTheBacklog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	s, err := newShop()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.mux())
	defer srv.Close()
	defer func() {
		if err := s.close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	}()
	if err := s.b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.placeOrders(ctx); err != nil {
		t.Fatal(err)
	}
	// Wait on the scraped series itself: the gauge is read at each scrape.
	waitFor := func(want string) {
		t.Helper()
		var lines []string
		for ctx.Err() == nil {
			if lines, err = scrape(ctx, srv.URL+"/metrics"); err != nil {
				t.Fatal(err)
			}
			for _, l := range lines {
				if l == want {
					return
				}
			}
			waitTick(ctx)
		}
		t.Fatalf("no line %q in /metrics; herald lines:\n%s", want, strings.Join(lines, "\n"))
	}
	waitFor(backlogLine + "2")

	resp, err := http.Get(srv.URL + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	var stats []bus.HandlerStats
	err = json.NewDecoder(resp.Body).Decode(&stats)
	resp.Body.Close()
	if err != nil || len(stats) != 3 || stats[2].Handler != "shipping.pack" || stats[2].Backlog != 2 || stats[2].InFlight != 1 {
		t.Fatalf("/stats = %+v, %v", stats, err)
	}

	s.Release()
	waitFor(backlogLine + "0")
	waitFor(`herald_handler_poisoned_total{messaging_consumer_group_name="email.confirm",messaging_destination_name="main.OrderPlaced",messaging_system="memory"} 1`)
}

func waitTick(ctx context.Context) {
	t := time.NewTimer(5 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// The whole demo runs and prints the metrics and o-2's trace: the retry, the
// payment published from the handler, and shipping's delivery, in one tree.
func TestRun(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, ln, &out, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		backlogLine + "2",
		backlogLine + "0",
		"POST /orders [server]",
		"herald.attempt=1 herald.outcome=retried error.type=*errors.errorString",
		"      publish main.PaymentCaptured [producer]",
		"        process main.PaymentCaptured [consumer]",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
