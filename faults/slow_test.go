package faults_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	hnats "github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/middleware"
)

// Fault 8: a handler takes 3x AckWait (AckWait 1s) on each of 2 events, at
// concurrency 1, so the second waits prefetched for 3s too. Progress acks
// keep the server from redelivering either: each is invoked exactly once,
// at attempt 1, and the consumer delivered exactly 2 messages (its delivery
// sequence counts redeliveries too).
func TestSlowHandlerBeyondAckWait(t *testing.T) {
	const ackWait = time.Second
	be := natsBackend(t, func(c *hnats.Config) { c.AckWait = ackWait })
	b := be.bus(t)
	const n, name = 2, "slow.h"
	c := newTally()
	var badAttempt atomic.Int32
	if _, err := bus.Subscribe(b, name, c.handler(func(ctx context.Context, e Event, _ int) error {
		if m, _ := handlers.FromContext(ctx); m.Attempt != 1 {
			badAttempt.Add(1)
		}
		return work(ctx, 3*ackWait)
	})); err != nil {
		t.Fatal(err)
	}
	took, ci := be.handleAll(t, b, c, name, n, "both slow events handled")
	f := oneHandler(t, "8-slow-handler", "nats", c, n, b)
	f.add("ack_wait", ackWait)
	f.add("handler_time", 3*ackWait)
	f.add("calls", c.totalCalls())
	f.add("server_deliveries", ci.Delivered.Consumer)
	f.add("server_redelivered", ci.NumRedelivered)
	f.add("took", took)
	f.log(t)
	for seq := range n {
		if k := c.callsOf(seq); k != 1 {
			t.Errorf("event %d: handler called %d times, want 1", seq, k)
		}
	}
	if ci.Delivered.Consumer != n || ci.NumRedelivered != 0 {
		t.Errorf("the server delivered %d times (%d redelivered) for %d events", ci.Delivered.Consumer, ci.NumRedelivered, n)
	}
	if badAttempt.Load() != 0 {
		t.Errorf("%d calls at an attempt other than 1", badAttempt.Load())
	}
}

// Fault 8, with a long retry backoff: the handler fails twice and the retry
// policy waits 1.5s (1.5x AckWait) before each retry, in process. Progress
// acks cover the wait: the handler is called exactly 3 times, the server
// delivered the event once.
func TestSlowRetryBeyondAckWait(t *testing.T) {
	const ackWait = time.Second
	be := natsBackend(t, func(c *hnats.Config) { c.AckWait = ackWait })
	b := be.bus(t)
	const name = "slow.retry"
	c := newTally()
	policy := middleware.RetryPolicy{MaxAttempts: 3, InitialInterval: 3 * ackWait / 2, MaxInterval: 3 * ackWait / 2, Multiplier: 1, Jitter: -1}
	if _, err := bus.Subscribe(b, name, c.handler(func(ctx context.Context, e Event, call int) error {
		if call < 3 {
			return errors.New("not yet")
		}
		return nil
	}), bus.WithRetry(policy)); err != nil {
		t.Fatal(err)
	}
	took, ci := be.handleAll(t, b, c, name, 1, "the event succeeded at the third attempt")
	f := figures{fault: "8-slow-retry", transport: "nats", handlers: 1, sent: 1, delivered: c.distinct(),
		dups: c.duplicates(), poisoned: len(poisonList(t, b, ""))}
	f.add("ack_wait", ackWait)
	f.add("retry_backoff", policy.InitialInterval)
	f.add("calls", c.totalCalls())
	f.add("server_deliveries", ci.Delivered.Consumer)
	f.add("server_redelivered", ci.NumRedelivered)
	f.add("took", took)
	f.log(t)
	if c.callsOf(0) != 3 || ci.Delivered.Consumer != 1 || ci.NumRedelivered != 0 {
		t.Errorf("%d calls (want 3); the server delivered %d times (want 1), %d redelivered", c.callsOf(0), ci.Delivered.Consumer, ci.NumRedelivered)
	}
}
