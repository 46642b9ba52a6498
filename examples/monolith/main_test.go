package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMonolith(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, zap.New(core), nil); err != nil {
		t.Fatal(err)
	}
	if n := logs.FilterMessage("retrying").Len(); n != 2 {
		t.Errorf("%d retry log lines, want 2 (inventory's transient failures)", n)
	}
	if n := logs.FilterMessage("handler attempt failed").Len(); n != 3 {
		t.Errorf("%d failed-attempt log lines, want 3 (inventory twice, email once)", n)
	}
	poisoned := logs.FilterMessage("event poisoned").All()
	if len(poisoned) != 1 {
		t.Fatalf("%d poison log lines, want 1", len(poisoned))
	}
	corr := poisoned[0].ContextMap()["correlation_id"].(string)
	if corr == "" {
		t.Fatal("poison log line has no correlation ID")
	}
	// The order's whole story is findable by its correlation ID.
	var story []string
	for _, e := range logs.All() {
		if e.ContextMap()["correlation_id"] == corr {
			story = append(story, e.Message)
		}
	}
	joined := strings.Join(story, " | ")
	for _, want := range []string{"charging card", "stock reserved", "receipt filed", "event poisoned", "confirmation sent"} {
		if !strings.Contains(joined, want) {
			t.Errorf("correlation %s log story lacks %q: %s", corr, want, joined)
		}
	}
}

// TestMonolithOps runs the story with the operator page: it shows the four
// handlers and what they handled, and run returns once ctx ends.
func TestMonolithOps(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	core, logs := observer.New(zap.InfoLevel)
	done := make(chan error, 1)
	go func() { done <- run(ctx, zap.New(core), ln) }()
	deadline := time.Now().Add(20 * time.Second)
	for logs.FilterMessage("serving the operator page until interrupted").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the story did not end")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
	resp, err := http.Get("http://" + ln.Addr().String() + "/ops/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, h := range []string{"billing.charge-card", "inventory.reserve", "email.confirm", "accounting.receipt"} {
		if !strings.Contains(string(body), `data-handler="`+h+`"`) {
			t.Errorf("the operator page does not show %s", h)
		}
	}
	if !strings.Contains(string(body), `data-k="handled">2<`) {
		t.Error("the operator page does not show the handled counts")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
