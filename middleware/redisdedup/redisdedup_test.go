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

// The store's leases and marks are checked without wall-clock margins: every
// lease and TTL that must still be live when checked is a minute long, and
// an expiry is brought forward with PEXPIRE (what Redis does when a TTL runs
// out) and then waited for, so a slow machine can only make the test slower.
func TestStoreMarksWithTTL(t *testing.T) {
	c := client(t)
	prefix := fmt.Sprintf("herald-test:%s:", event.NewID())
	s := redisdedup.New(c, prefix)
	ctx := context.Background()
	key := prefix + "k"
	t.Cleanup(func() { _ = c.Del(context.Background(), key).Err() })
	// expireNow makes key's TTL run out, as Redis would once it is due.
	expireNow := func() {
		t.Helper()
		if err := c.PExpire(ctx, key, time.Millisecond).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// ttlWithin fails t unless key has a TTL in (0, d].
	ttlWithin := func(what string, d time.Duration) {
		t.Helper()
		ttl, err := c.PTTL(ctx, key).Result()
		if err != nil || ttl <= 0 || ttl > d {
			t.Fatalf("%s: TTL %v (%v), want in (0, %v]", what, ttl, err, d)
		}
	}

	done, tokA, err := s.Begin(ctx, "k", time.Minute)
	if err != nil || done || tokA == "" {
		t.Fatalf("fresh key: done %v token %q %v", done, tokA, err)
	}
	ttlWithin("claim", time.Minute)
	if done, tok, _ := s.Begin(ctx, "k", time.Minute); done || tok != "" {
		t.Fatal("a second claim on a live claim succeeded")
	}
	// A's lease runs out; B claims; A's late Abandon must not drop B's claim.
	expireNow()
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
	if err := s.Finish(ctx, "k", time.Minute); err != nil {
		t.Fatal(err)
	}
	ttlWithin("done mark", time.Minute)
	if err := s.Abandon(ctx, "k", tokB); err != nil {
		t.Fatal(err)
	}
	if done, _, _ := s.Begin(ctx, "k", time.Minute); !done {
		t.Fatal("finished key not done (or Abandon removed a done mark)")
	}
	expireNow()
	bustest.Eventually(t, 5*time.Second, func() bool {
		d, tok, _ := s.Begin(ctx, "k", time.Minute)
		return !d && tok != ""
	}, "done mark expires")

	// A TTL or lease below a millisecond still expires (Redis refuses 0).
	if err := s.Finish(ctx, "k", 0); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 5*time.Second, func() bool {
		d, _, _ := s.Begin(ctx, "k", 0)
		return !d
	}, "a zero-TTL done mark expires")
}

// countingStore counts how the deliveries it sees end: handled (Finish) or
// skipped as done (Begin reports done).
type countingStore struct {
	*redisdedup.Store
	finished, skipped atomic.Int32
}

func (s *countingStore) Begin(ctx context.Context, key string, lease time.Duration) (bool, string, error) {
	done, tok, err := s.Store.Begin(ctx, key, lease)
	if err == nil && done {
		s.skipped.Add(1)
	}
	return done, tok, err
}

func (s *countingStore) Finish(ctx context.Context, key string, ttl time.Duration) error {
	err := s.Store.Finish(ctx, key, ttl)
	s.finished.Add(1)
	return err
}

type Charge struct{ N int }

// Two replicas of one handler (two buses, same name, one broker) share the
// Redis store: an event delivered again (republished with the same ID) to
// either replica is handled once.
func TestReplicasShareDedup(t *testing.T) {
	c := client(t)
	store := &countingStore{Store: redisdedup.New(c, fmt.Sprintf("herald-test:%s:", event.NewID()))}
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
	// Every one of the 40 deliveries ends handled or skipped (a delivery
	// deferred while the other replica holds the claim comes back and ends
	// so too): once 40 have ended, nothing more can call the handler.
	bustest.Eventually(t, 10*time.Second, func() bool {
		return store.finished.Load()+store.skipped.Load() >= 40
	}, "40 deliveries handled or skipped")
	if got := calls.Load(); got != 20 {
		t.Errorf("handled %d times for 20 distinct IDs published twice each", got)
	}
	if f, s := store.finished.Load(), store.skipped.Load(); f != 20 || s != 20 {
		t.Errorf("%d deliveries handled and %d skipped, want 20 and 20", f, s)
	}
}
