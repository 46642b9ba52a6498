package faults_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	hnats "github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
)

// Fault 3: a process dies with 100 events delivered to its handler and not
// acknowledged. Its connection is closed abruptly (nothing is acked, nacked
// or drained: what the server sees when a process is killed); a new process
// with the same handler name gets all 100, after AckWait.
func TestCrashBeforeAck(t *testing.T) {
	// Prefetch 1: each of the dying process's 100 workers holds exactly the
	// one event it is handling.
	be := natsBackend(t, func(c *hnats.Config) { c.Prefetch = 1 })
	const n = 100
	const name = "crash.h"

	dying, trA := be.unstartedBus(t)
	var entered atomic.Int32
	if _, err := bus.Subscribe(dying, name, func(ctx context.Context, e Event) error {
		entered.Add(1)
		<-ctx.Done() // stuck until the process "dies"
		return ctx.Err()
	}, bus.WithConcurrency(n)); err != nil {
		t.Fatal(err)
	}
	if err := dying.Start(ctxFor(t, wait)); err != nil {
		t.Fatal(err)
	}
	closeDying := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		begin := time.Now()
		_ = dying.Close(ctx) // its connection is gone: errors are expected
		if d := time.Since(begin); d > 5*time.Second {
			t.Errorf("Close of the crashed bus took %v with a 2s deadline", d)
		}
	}
	t.Cleanup(closeDying)

	pub := be.bus(t)
	publishBatch(t, pub, 0, n)
	bustest.Eventually(t, wait, func() bool { return entered.Load() == n }, "all %d events in the handler (have %d)", n, entered.Load())
	ci := be.consumer(t, name, eventName)
	if ci.NumAckPending != n {
		t.Fatalf("before the crash the consumer has %d events unacknowledged, want %d", ci.NumAckPending, n)
	}

	crash := time.Now()
	trA.(*hnats.Transport).Conn().Close()

	c := newTally()
	restarted := be.bus(t)
	if _, err := bus.Subscribe(restarted, name, c.handler(nil)); err != nil {
		t.Fatal(err)
	}
	c.waitDistinct(t, n, wait, "the new process got every unacknowledged event")
	recovered := time.Since(crash)
	be.settled(t, name)
	c.check(t, n, name)
	f := figures{fault: "3-crash-before-ack", transport: "nats", handlers: 1, sent: n, delivered: c.distinct(),
		dups: c.duplicates(), poisoned: len(poisonList(t, restarted, "")), recover: recovered}
	f.add("unacked_at_crash", ci.NumAckPending)
	f.add("ack_wait", be.cfg.AckWait)
	f.log(t)
	if f.poisoned != 0 {
		t.Errorf("%d poison records after a crash", f.poisoned)
	}
}
