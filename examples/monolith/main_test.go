package main

import (
	"context"
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
	if err := run(ctx, zap.New(core)); err != nil {
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
