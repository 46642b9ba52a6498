package main

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/outbox/outboxtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Billing is charged for the saved orders, in order, and never for the one
// whose transaction rolled back.
func TestShop(t *testing.T) {
	db := outboxtest.DB(t)
	schema := outboxtest.Schema(outboxtest.Table(t, db))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := run(ctx, zap.NewNop(), db, schema)
	if err != nil {
		t.Fatal(err)
	}
	// The outbox forwards in order: had o-2's event been published, it would
	// have come between o-1 and o-3.
	if len(got) != 2 || got[0] != "o-1" || got[1] != "o-3" {
		t.Fatalf("billing charged %v, want [o-1 o-3]", got)
	}
}
