package faults_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald/adapters/memory"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/middleware"
)

// Fault 14: Close on memory with 10,000 events queued for one handler.
//
//   - given time (a Close ctx long enough), the handler works through the
//     whole queue before Close returns nil: 0 lost;
//   - without (a 200ms ctx), Close returns an error wrapping ErrUnhandled
//     that counts exactly the events not handled, and nothing is poisoned.
func TestCloseWith10kQueuedOnMemory(t *testing.T) {
	const n = 10000
	for _, tc := range []struct {
		name     string
		closeCtx time.Duration
	}{
		{"given-time", 2 * wait},
		{"without", 200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := memoryBackend(t, memory.WithBufferSize(n))
			b, _ := be.unstartedBus(t)
			c := subscribeTally(t, b, "close.10k", func(ctx context.Context, e Event, _ int) error {
				select { // the handler's work: about 50µs an event
				case <-time.After(50 * time.Microsecond):
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
			if err := b.Start(ctxFor(t, wait)); err != nil {
				t.Fatal(err)
			}
			publishBatch(t, b, 0, n)
			queued := n - c.distinct()
			took, err := closeWithin(t, b, tc.closeCtx, closeSlack)
			handled := c.distinct()
			f := figures{fault: "14-close-10k-queued-" + tc.name, transport: "memory", handlers: 1, sent: n,
				delivered: handled, dups: c.duplicates(), poisoned: len(poisonList(t, b, ""))}
			f.add("queued_at_close", queued)
			f.add("close_ctx", tc.closeCtx)
			f.add("close_took", took)
			f.add("reported_unhandled", n-handled)
			f.log(t)
			switch {
			case handled == n && err != nil:
				t.Errorf("every event handled, yet Close: %v", err)
			case handled < n && !errors.Is(err, bus.ErrUnhandled):
				t.Errorf("%d of %d events handled, and Close: %v, want ErrUnhandled", handled, n, err)
			case handled < n && !strings.Contains(err.Error(), fmt.Sprintf(`handler "close.10k": %d events`, n-handled)):
				t.Errorf("Close: %v, want it to count the %d events not handled", err, n-handled)
			}
			if tc.name == "given-time" && handled != n {
				t.Errorf("%d of %d events handled with time to spare: %d lost", handled, n, n-handled)
			}
			if f.poisoned != 0 {
				t.Errorf("Close poisoned %d events", f.poisoned)
			}
		})
	}
}

// Fault 15: a nats-server restart while events wait in delayed redelivery.
// A handler fails the first attempt of every event and its policy sends
// failures straight to the delayed stage (one attempt in process, then a
// redelivery after 500ms): the server restarts while the events wait on it
// for their redelivery. Every event is handled, none poisoned: 0 lost.
func TestNATSRestartDuringDelayedRedelivery(t *testing.T) {
	be := natsBackend(t)
	policy := middleware.RetryPolicy{MaxAttempts: 20, ImmediateAttempts: 1, RedeliveryDelay: 500 * time.Millisecond,
		MaxRedeliveryDelay: time.Second}
	b := be.bus(t, bus.WithDefaultRetry(policy))
	const n = 500
	var failed atomic.Int64
	c := subscribeTally(t, b, "delayed.restart", func(ctx context.Context, e Event, call int) error {
		if call == 1 {
			failed.Add(1)
			return errors.New("first attempt fails")
		}
		return nil
	}, bus.WithConcurrency(4))
	publishBatch(t, b, 0, n)
	c.waitFor(t, wait, func() bool { return failed.Load() == n }, "every event failed once and waits for its redelivery")
	early := c.distinct()
	down := time.Now()
	if err := be.srv.Restart(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	c.waitDistinct(t, n, 2*wait, "every event handled after the restart")
	f := figures{fault: "15-restart-during-delayed-redelivery", transport: "nats", handlers: 1, sent: n,
		delivered: c.distinct(), dups: c.duplicates(), poisoned: len(poisonList(t, b, "")), recover: time.Since(down)}
	f.add("handled_before_restart", early)
	f.log(t)
	c.check(t, n, "delayed.restart")
	if f.poisoned != 0 {
		t.Errorf("%d poison records, want 0", f.poisoned)
	}
}

// Fault 16: retries never stall a queue. 30,000 events from 8 publishers to
// 3 handlers on NATS, with the default retry policy; one handler fails 5% of
// the events, twice over:
//
//   - first-attempt: only their first attempt. Before two-stage retries its
//     retry slept 100ms or more on its one worker: it finished 151s after the
//     others. Now the retry runs at once.
//   - in-process-exhausted: their first 3 attempts, every immediate one: the
//     events go to the delayed stage (redelivery after 1s), and the worker
//     goes on meanwhile.
//
// Either way the failing handler must finish within a few seconds of the
// healthy ones.
func TestRetriesDoNotStallAQueue(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fails int // attempts of a flaky event that fail
	}{
		{"first-attempt", 1},
		{"in-process-exhausted", 3},
	} {
		t.Run(tc.name, func(t *testing.T) { retriesDoNotStall(t, tc.name, tc.fails) })
	}
}

func retriesDoNotStall(t *testing.T, variant string, fails int) {
	be := natsBackend(t)
	b := be.bus(t, bus.WithDefaultRetry(middleware.RetryPolicy{})) // the default policy
	const n, publishers = 30000, 8
	flaky := func(seq int) bool { return seq%20 == 0 }
	var mu sync.Mutex
	done := map[string]time.Duration{}
	begin := time.Now()
	var tallies []*tally
	for _, name := range []string{"stall.healthy-1", "stall.healthy-2", "stall.flaky"} {
		var fail func(context.Context, Event, int) error
		if name == "stall.flaky" {
			fail = func(_ context.Context, e Event, call int) error {
				if call <= fails && flaky(e.Seq) {
					return errors.New("transient")
				}
				return nil
			}
		}
		tallies = append(tallies, subscribeTally(t, b, name, fail))
	}
	var wg sync.WaitGroup
	for i, c := range tallies {
		name := []string{"healthy-1", "healthy-2", "flaky"}[i]
		wg.Go(func() {
			c.waitDistinct(t, n, 5*wait, name+" has every event")
			mu.Lock()
			done[name] = time.Since(begin)
			mu.Unlock()
		})
	}
	pub := newPublisher(be.bus(t), "stall")
	pub.workers = publishers
	if failed := pub.run(0, n, time.Now().Add(2*wait)); len(failed) > 0 {
		t.Fatalf("gave up publishing %d events", len(failed))
	}
	published := time.Since(begin)
	wg.Wait()
	healthy := max(done["healthy-1"], done["healthy-2"])
	lag := done["flaky"] - healthy
	f := figures{fault: "16-retries-do-not-stall-" + variant, transport: "nats", handlers: 3, sent: n, poisoned: len(poisonList(t, b, ""))}
	for _, c := range tallies {
		f.delivered += c.distinct()
		f.dups += c.duplicates()
	}
	f.add("published_after", published)
	f.add("healthy_done_after", healthy)
	f.add("flaky_done_after", done["flaky"])
	f.add("flaky_lag", lag)
	f.add("flaky_calls", tallies[2].totalCalls())
	f.log(t)
	if lag > 10*time.Second {
		t.Errorf("the handler that fails 5%% of the events finished %v after the healthy ones, want a few seconds", lag)
	}
	if want := n + n/20*fails; tallies[2].totalCalls() != want {
		t.Errorf("the flaky handler was called %d times, want %d", tallies[2].totalCalls(), want)
	}
	if f.poisoned != 0 {
		t.Errorf("%d poison records, want 0", f.poisoned)
	}
}
