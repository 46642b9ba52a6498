package nats_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/middleware"
)

// With memory storage, a server restart loses the streams (and consumers).
// The transport prepares them again when it finds them missing: publishes
// succeed again, handlers consume again (their consumers are created again
// with the streams), and failing events are poisoned again.
func TestMemoryStorageServerRestart(t *testing.T) {
	for _, retention := range []nats.Retention{nats.RetentionInterest, nats.RetentionLimits} {
		t.Run(map[nats.Retention]string{nats.RetentionInterest: "interest", nats.RetentionLimits: "limits"}[retention], func(t *testing.T) {
			srv := natstest.New(t)
			log, logs := warnings()
			tr := broker{url: srv.URL()}.transport(t, func(c *nats.Config) {
				c.Storage = jetstream.MemoryStorage
				c.Retention = retention
				c.NakDelay = 20 * time.Millisecond
				c.MaxNakDelay = 100 * time.Millisecond
				c.Logger = log
			})
			bb := bustest.New(t, bus.WithTransport(tr),
				bus.WithDefaultRetry(middleware.RetryPolicy{MaxAttempts: 2, InitialInterval: 5 * time.Millisecond, MaxInterval: 20 * time.Millisecond}))
			r := bustest.Record[OrderPlaced](t, bb, "memory.h")
			var mu sync.Mutex
			failed := map[int]int{}
			if _, err := bus.Subscribe(bb, "memory.failing", func(ctx context.Context, e OrderPlaced) error {
				mu.Lock()
				failed[e.Seq]++
				mu.Unlock()
				return bus.Permanent(errors.New("always"))
			}); err != nil {
				t.Fatal(err)
			}
			publish := func(from, to int) {
				t.Helper()
				for i := from; i < to; i++ {
					// Retried with the same ID while the client reconnects.
					bustest.Eventually(t, wait, func() bool {
						ctx, cancel := context.WithTimeout(context.Background(), time.Second)
						defer cancel()
						return bus.Publish(ctx, bb, OrderPlaced{Seq: i}, bus.WithMessageID(fmt.Sprintf("mem-%d", i))) == nil
					}, "publish %d", i)
				}
			}
			publish(0, 3)
			r.Wait(t, 3, wait)
			waitPoison(t, bb, "memory.failing", 3)

			if err := srv.Restart(); err != nil {
				t.Fatal(err)
			}
			begin := time.Now()
			publish(3, 6)
			t.Logf("publishing again %v after the restart", time.Since(begin))
			got := r.Wait(t, 6, wait)
			seen := map[int]bool{}
			for _, e := range got {
				seen[e.Seq] = true
			}
			for i := range 6 {
				if !seen[i] {
					t.Errorf("event %d not handled (got %v)", i, got)
				}
			}
			// The records of before the restart were in memory: gone.
			waitPoison(t, bb, "memory.failing", 3)
			t.Logf("all handled and poisoned %v after the restart", time.Since(begin))
			if logs.FilterMessageSnippet("missing").FilterField(zap.String("stream", nats.DefaultStreamName)).Len() == 0 {
				t.Error("no warning about the missing stream")
			}
		})
	}
}
