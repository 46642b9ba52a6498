package faults_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/heraldbus/herald/adapters/memory"
	"github.com/heraldbus/herald/bus"
)

// blocked returns a handler func that blocks on every event until the test
// ends (or its ctx is cancelled), counting the events it entered.
func blocked(t testing.TB, entered *tally) func(context.Context, Event) error {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // runs before the bus's Close
	return entered.handler(func(ctx context.Context, _ Event, _ int) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
}

// Fault 11: fan-out isolation. 5 handlers of one event type, one of them
// blocked forever: the other 4 receive all 10k events.
//
// On memory each handler has a bounded queue (default 1024 events, set by
// memory.WithBufferSize): a blocked handler's full queue makes Publish wait,
// honouring its ctx; that backpressure is the policy (docs/contract.md, isolation: "never
// delays other handlers beyond its own bounded buffer"). So the 10k test runs
// with a buffer larger than 10k, and a second test shows the policy with a
// small buffer: Publish returns ctx's error once the blocked queue is full,
// and every event whose Publish returned nil reached the 4 others.
func TestFanOutIsolation(t *testing.T) {
	const n = 10000
	run := func(t *testing.T, be *backend) {
		b := be.bus(t)
		stuck := newTally()
		if _, err := bus.Subscribe(b, "iso.blocked", blocked(t, stuck)); err != nil {
			t.Fatal(err)
		}
		free := subscribeTallies(t, b, "iso.free", 4, nil)
		begin := time.Now()
		publishBatch(t, b, 0, n)
		published := time.Since(begin)
		f := figures{fault: "11-fan-out-isolation", transport: be.name, handlers: len(free), sent: n}
		for i, c := range free {
			c.waitDistinct(t, n, 2*wait, fmt.Sprintf("free handler %d has every event", i))
			c.check(t, n, fmt.Sprintf("free handler %d", i))
			f.delivered += c.distinct()
			f.dups += c.duplicates()
		}
		f.recover = time.Since(begin) // here: time until the 4 had everything
		f.poisoned = len(poisonList(t, b, ""))
		f.add("blocked_handler_entered", stuck.totalCalls())
		f.add("publish_took", published)
		f.log(t)
		if f.poisoned != 0 {
			t.Errorf("%d poison records", f.poisoned)
		}
	}
	t.Run("memory", func(t *testing.T) { run(t, memoryBackend(t, memory.WithBufferSize(n+64))) })
	t.Run("nats", func(t *testing.T) { run(t, natsBackend(t)) })
}

// Fault 11, memory's policy: with a small buffer (64) a blocked handler's
// queue fills, and Publish then waits for room until its ctx ends, returning
// ctx's error: the publisher knows. The 4 free handlers got every event whose
// Publish returned nil.
func TestMemoryBackpressurePolicy(t *testing.T) {
	const buffer = 64
	be := memoryBackend(t, memory.WithBufferSize(buffer))
	b := be.bus(t)
	stuck := newTally()
	if _, err := bus.Subscribe(b, "bp.blocked", blocked(t, stuck)); err != nil {
		t.Fatal(err)
	}
	free := subscribeTallies(t, b, "bp.free", 4, nil)
	ok := 0
	var pubErr error
	var blockedFor time.Duration
	for seq := 0; seq < 10*buffer; seq++ {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		begin := time.Now()
		pubErr = bus.Publish(ctx, b, Event{Seq: seq})
		blockedFor = time.Since(begin)
		cancel()
		if pubErr != nil {
			break
		}
		ok++
	}
	if !errors.Is(pubErr, context.DeadlineExceeded) {
		t.Fatalf("after %d publishes: %v, want the ctx's deadline error", ok, pubErr)
	}
	// The blocked handler holds one event, its queue the buffer.
	if ok < buffer || ok > buffer+1 {
		t.Errorf("%d publishes returned nil before the blocked queue (%d) was full", ok, buffer)
	}
	f := figures{fault: "11-memory-backpressure", transport: "memory", handlers: len(free), sent: ok}
	for i, c := range free {
		c.waitDistinct(t, ok, wait, fmt.Sprintf("free handler %d has every event published", i))
		for seq := range ok {
			if !c.has(seq) {
				t.Errorf("free handler %d lacks event %d, whose Publish returned nil", i, seq)
			}
		}
		f.delivered += min(c.distinct(), ok)
		f.dups += c.duplicates()
	}
	f.poisoned = len(poisonList(t, b, ""))
	f.add("buffer", buffer)
	f.add("publish_blocked_for", blockedFor)
	f.add("publish_err", fmt.Sprintf("%q", pubErr.Error()))
	f.log(t)
}
