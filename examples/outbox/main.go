// Command outbox is a shop that saves an order and its OrderPlaced event in
// one Postgres transaction (the transactional outbox), so that the event is
// published if and only if the order is saved. A forwarder relays committed
// events into the in-process bus, where billing handles them: a monolith can
// adopt the outbox before it splits, and keep it when the bus moves to NATS.
//
// The second order's transaction fails after the event is stored: it rolls
// back, and billing never hears of it. The program exits with status 0 when
// billing charged exactly the saved orders.
//
//	POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable go run ./examples/outbox
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/outbox"
)

// OrderPlaced is published once an order is saved.
type OrderPlaced struct {
	OrderID string `json:"order_id"`
	Cents   int64  `json:"cents"`
}

// placeOrder saves the order and stores its event in one transaction; fail
// makes the transaction fail after both, as a constraint or a crash would.
func placeOrder(ctx context.Context, db *sql.DB, ob *outbox.Outbox, table string, o OrderPlaced, fail bool) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // after Commit, a no-op
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+" (id, cents) VALUES ($1, $2)", o.OrderID, o.Cents); err != nil {
		return err
	}
	if err := outbox.Store(ctx, ob, tx, o); err != nil {
		return err
	}
	if fail {
		return errors.New("payment provider refused the card")
	}
	return tx.Commit()
}

// run sets the shop up in schema (created, and dropped at the end) and
// returns the orders billing charged.
func run(ctx context.Context, log *zap.Logger, db *sql.DB, schema string) ([]string, error) {
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+schema+"; CREATE TABLE IF NOT EXISTS "+schema+
		".orders (id text PRIMARY KEY, cents bigint NOT NULL)"); err != nil {
		return nil, err
	}
	defer func() { _, _ = db.ExecContext(context.WithoutCancel(ctx), "DROP SCHEMA "+schema+" CASCADE") }()

	b, err := bus.New(bus.WithLogger(log))
	if err != nil {
		return nil, err
	}
	charged := make(chan string, 8)
	if _, err := bus.Subscribe(b, "billing.charge", func(ctx context.Context, e OrderPlaced) error {
		log.Info("charging", zap.String("order", e.OrderID), zap.Int64("cents", e.Cents))
		charged <- e.OrderID
		return nil
	}); err != nil {
		return nil, err
	}
	if err := b.Start(ctx); err != nil {
		return nil, err
	}
	defer func() { _ = b.Close(context.WithoutCancel(ctx)) }()

	ob, err := outbox.New(db, b, outbox.WithTable(schema+".outbox"))
	if err != nil {
		return nil, err
	}
	if err := ob.Migrate(ctx); err != nil { // on request: at deployment, or here
		return nil, err
	}
	fctx, stop := context.WithCancel(ctx)
	forwarded := make(chan error, 1)
	go func() { forwarded <- ob.Forward(fctx) }()
	defer func() { stop(); <-forwarded }()

	if err := placeOrder(ctx, db, ob, schema+".orders", OrderPlaced{OrderID: "o-1", Cents: 4900}, false); err != nil {
		return nil, err
	}
	err = placeOrder(ctx, db, ob, schema+".orders", OrderPlaced{OrderID: "o-2", Cents: 1800}, true)
	log.Info("order o-2 not saved", zap.Error(err))
	if err := placeOrder(ctx, db, ob, schema+".orders", OrderPlaced{OrderID: "o-3", Cents: 700}, false); err != nil {
		return nil, err
	}
	// The outbox forwards in order: once o-3 is charged, o-2 would have been.
	var got []string
	for len(got) < 2 {
		select {
		case id := <-charged:
			got = append(got, id)
		case <-ctx.Done():
			return got, fmt.Errorf("waiting for billing: %w", ctx.Err())
		}
	}
	return got, nil
}

func main() {
	log, _ := zap.NewDevelopment(zap.WithCaller(false))
	defer func() { _ = log.Sync() }()
	url := os.Getenv("POSTGRES_URL")
	if url == "" {
		log.Fatal("POSTGRES_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	db, err := sql.Open("pgx", url)
	if err != nil {
		log.Fatal("open", zap.Error(err))
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := run(ctx, log, db, "herald_example_shop")
	if err != nil {
		log.Error("shop failed", zap.Error(err))
		os.Exit(1)
	}
	if len(got) != 2 || got[0] != "o-1" || got[1] != "o-3" {
		log.Error("billing charged the wrong orders", zap.Strings("charged", got))
		os.Exit(1)
	}
	log.Info("billing charged exactly the saved orders", zap.Strings("charged", got))
}
