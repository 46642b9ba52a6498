package redisdedup_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/heraldbus/herald/adapters/memory"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/middleware/redisdedup"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// client connects to REDIS_ADDR (default 127.0.0.1:6379), or skips the test,
// saying so, when no Redis answers.
func client(t *testing.T) *redis.Client {
	t.Helper()
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		t.Skipf("no Redis at %s (%v): the Redis dedup store is untested here", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestStoreMarksWithTTL(t *testing.T) {
	c := client(t)
	prefix := fmt.Sprintf("herald-test:%s:", event.NewID())
	s := redisdedup.New(c, prefix)
	ctx := context.Background()
	done, tokA, err := s.Begin(ctx, "k", 30*time.Millisecond)
	if err != nil || done || tokA == "" {
		t.Fatalf("fresh key: done %v token %q %v", done, tokA, err)
	}
	if done, tok, _ := s.Begin(ctx, "k", time.Minute); done || tok != "" {
		t.Fatal("a second claim on a live claim succeeded")
	}
	// A's lease runs out; B claims; A's late Abandon must not drop B's claim.
	var tokB string
	bustest.Eventually(t, 5*time.Second, func() bool {
		_, tokB, _ = s.Begin(ctx, "k", time.Minute)
		return tokB != ""
	}, "claim after the lease")
	if err := s.Abandon(ctx, "k", tokA); err != nil {
		t.Fatal(err)
	}
	if _, tok, _ := s.Begin(ctx, "k", time.Minute); tok != "" {
		t.Fatal("a stale Abandon dropped another holder's claim")
	}
	if err := s.Abandon(ctx, "k", tokB); err != nil {
		t.Fatal(err)
	}
	if _, tok, _ := s.Begin(ctx, "k", time.Minute); tok == "" {
		t.Fatal("claim after the holder's Abandon refused")
	}
	if err := s.Finish(ctx, "k", 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := s.Abandon(ctx, "k", tokB); err != nil {
		t.Fatal(err)
	}
	if done, _, _ := s.Begin(ctx, "k", time.Minute); !done {
		t.Fatal("finished key not done (or Abandon removed a done mark)")
	}
	bustest.Eventually(t, 5*time.Second, func() bool {
		d, _, _ := s.Begin(ctx, "k", time.Millisecond)
		return !d
	}, "done mark expires")
}

type Charge struct{ N int }

// Two replicas of one handler (two buses, same name, one broker) share the
// Redis store: an event delivered again (republished with the same ID) to
// either replica is handled once.
func TestReplicasShareDedup(t *testing.T) {
	c := client(t)
	store := redisdedup.New(c, fmt.Sprintf("herald-test:%s:", event.NewID()))
	root := memory.New(memory.WithRedeliveryDelay(5 * time.Millisecond))
	t.Cleanup(func() { _ = root.Close() })
	var calls atomic.Int32
	h := func(context.Context, Charge) error { calls.Add(1); return nil }
	b1 := bustest.New(t, bus.WithTransport(root.Peer()))
	b2 := bustest.New(t, bus.WithTransport(root.Peer()))
	for _, b := range []*bus.Bus{b1, b2} {
		if _, err := bus.Subscribe(b, "billing", h, bus.WithDedup(store, time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	for i := range 20 {
		// Each ID is published twice: as a lost PubAck's retry would.
		for range 2 {
			if err := bus.Publish(ctx, b1, Charge{N: i}, bus.WithMessageID(fmt.Sprint("charge-", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	marker := &bustest.Recorder[Charge]{}
	if _, err := bus.Subscribe(b1, "marker", marker.Handle); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 10*time.Second, func() bool { return calls.Load() >= 20 }, "20 distinct charges handled")
	// Wait until both replicas' queues are empty, then count.
	bustest.Eventually(t, 10*time.Second, func() bool {
		n := calls.Load()
		time.Sleep(20 * time.Millisecond) // settle window before re-reading the counter
		return calls.Load() == n
	}, "handling settles")
	if got := calls.Load(); got != 20 {
		t.Errorf("handled %d times for 20 distinct IDs published twice each", got)
	}
}
