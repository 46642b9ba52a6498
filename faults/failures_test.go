package faults_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/middleware"
)

// Fault 4: 10% of 1k events fail twice, then succeed. None is poisoned;
// those are attempted exactly 3 times (the third with Attempt 3 in its
// metadata), the others once.
func TestTransientFailures(t *testing.T) {
	eachBackend(t, func(t *testing.T, be *backend) {
		b := be.bus(t)
		const n = 1000
		flaky := func(seq int) bool { return seq%10 == 0 }
		c := newTally()
		var badAttempt atomic.Int32
		fn := c.handler(func(ctx context.Context, e Event, call int) error {
			if flaky(e.Seq) && call <= 2 {
				return fmt.Errorf("transient failure %d of seq %d", call, e.Seq)
			}
			if m, _ := handlers.FromContext(ctx); m.Attempt != call {
				badAttempt.Add(1)
			}
			return nil
		})
		// 5 attempts allowed: the flaky events need 3.
		policy := middleware.RetryPolicy{MaxAttempts: 5, InitialInterval: 5 * time.Millisecond, MaxInterval: 20 * time.Millisecond}
		if _, err := bus.Subscribe(b, "transient.h", fn, bus.WithConcurrency(4), bus.WithRetry(policy)); err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		publishBatch(t, b, 0, n)
		c.waitDistinct(t, n, wait, "every event succeeded")
		took := time.Since(begin)
		be.settled(t, "transient.h")
		c.check(t, n, "transient.h")

		var wrong []string
		retried := 0
		for seq := range n {
			want := 1
			if flaky(seq) {
				want = 3
				retried++
			}
			if got := c.callsOf(seq); got != want {
				wrong = append(wrong, fmt.Sprintf("seq %d: %d calls, want %d", seq, got, want))
			}
		}
		f := figures{fault: "4-transient-failures", transport: be.name, handlers: 1, sent: n, delivered: c.distinct(),
			dups: c.duplicates(), poisoned: len(poisonList(t, b, ""))}
		f.add("flaky", retried)
		f.add("calls", c.totalCalls())
		f.add("expected_calls", n+2*retried)
		f.add("all_handled_in", took)
		f.log(t)
		if len(wrong) > 0 {
			t.Errorf("%d events attempted a wrong number of times: %v", len(wrong), wrong[:min(10, len(wrong))])
		}
		if f.poisoned != 0 {
			t.Errorf("%d poison records for transient failures", f.poisoned)
		}
		if k := badAttempt.Load(); k != 0 {
			t.Errorf("%d successful calls had a metadata Attempt different from the call number", k)
		}
	})
}

// Fault 5: 50 of 1000 events always fail. Exactly 50 poison records, each
// with the handler's name, the reason, the attempts and the event's
// original correlation ID; nothing left pending on the consumer; the other
// 950 succeed, and a second handler gets all 1000. After the handler is
// fixed, replaying the records delivers the 50 to that handler only.
func TestPermanentFailures(t *testing.T) {
	eachBackend(t, func(t *testing.T, be *backend) {
		b := be.bus(t)
		const n = 1000
		bad := func(seq int) bool { return seq%20 == 0 }
		var fixed atomic.Bool
		failing := newTally()
		if _, err := bus.Subscribe(b, "perm.fails", failing.handler(func(ctx context.Context, e Event, _ int) error {
			if bad(e.Seq) && !fixed.Load() {
				return fmt.Errorf("always fails: seq %d", e.Seq)
			}
			return nil
		}), bus.WithConcurrency(4)); err != nil {
			t.Fatal(err)
		}
		other := newTally()
		if _, err := bus.Subscribe(b, "perm.other", other.handler(nil), bus.WithConcurrency(4)); err != nil {
			t.Fatal(err)
		}
		corr := func(seq int) []bus.PublishOption {
			return []bus.PublishOption{bus.WithCorrelationID(fmt.Sprintf("corr-%d", seq))}
		}
		publishRange(t, b, 0, n, corr)

		const nbad = n / 20
		waitPoison(t, b, "perm.fails", nbad)
		failing.waitDistinct(t, n-nbad, wait, "the 950 good events succeeded")
		other.waitDistinct(t, n, wait, "the other handler got every event")
		be.settled(t, "perm.fails")
		be.settled(t, "perm.other")
		recs := poisonList(t, b, "perm.fails") // nothing more came
		if all := poisonList(t, b, ""); len(all) != nbad {
			t.Errorf("%d poison records in all, want %d", len(all), nbad)
		}
		seen := map[int]bool{}
		for _, r := range recs {
			var e Event
			if err := json.Unmarshal(r.Payload, &e); err != nil {
				t.Errorf("record %s: payload %q: %v", r.ID, r.Payload, err)
				continue
			}
			seen[e.Seq] = true
			wantErr := fmt.Sprintf("always fails: seq %d", e.Seq)
			if !bad(e.Seq) || r.Handler != "perm.fails" || !strings.Contains(r.Error, wantErr) ||
				r.Attempts != fastRetry.MaxAttempts || r.Event.CorrelationID != fmt.Sprintf("corr-%d", e.Seq) ||
				r.Event.ID == "" || r.Event.Name != eventName || r.FirstFailure.IsZero() || r.LastFailure.Before(r.FirstFailure) {
				t.Errorf("record for seq %d: handler %q, error %q, attempts %d (want %d), correlation %q, event %+v, failures %v..%v",
					e.Seq, r.Handler, r.Error, r.Attempts, fastRetry.MaxAttempts, r.Event.CorrelationID, r.Event, r.FirstFailure, r.LastFailure)
			}
		}
		if len(recs) != nbad || len(seen) != nbad {
			t.Errorf("%d records for %d distinct events, want exactly %d", len(recs), len(seen), nbad)
		}
		for seq := range n {
			if want := map[bool]int{true: fastRetry.MaxAttempts, false: 1}[bad(seq)]; failing.callsOf(seq) != want {
				t.Errorf("seq %d: %d calls, want %d", seq, failing.callsOf(seq), want)
			}
		}

		// Fix the handler and replay.
		fixed.Store(true)
		begin := time.Now()
		replayed, err := b.Poison().ReplayAll(ctxFor(t, wait), "perm.fails")
		if err != nil || replayed != nbad {
			t.Fatalf("ReplayAll = %d, %v; want %d", replayed, err, nbad)
		}
		failing.waitDistinct(t, n, wait, "the replayed events succeeded")
		recovered := time.Since(begin)
		// A marker to both: the other handler has handled everything before it.
		publishRange(t, b, n, 1)
		other.waitFor(t, wait, func() bool { return other.ok[n] > 0 }, "the marker reached the other handler")
		failing.waitFor(t, wait, func() bool { return failing.ok[n] > 0 }, "the marker reached the failing handler")
		be.settled(t, "perm.other")
		if got := other.totalCalls(); got != n+1 {
			t.Errorf("the other handler was called %d times, want %d: a replay reached it", got, n+1)
		}
		if left := poisonList(t, b, ""); len(left) != 0 {
			t.Errorf("%d records left after the replay", len(left))
		}
		failing.check(t, n+1, "perm.fails")
		other.check(t, n+1, "perm.other")

		f := figures{fault: "5-permanent-failures", transport: be.name, handlers: 2, sent: n,
			delivered: failing.distinct() + other.distinct() - 2, dups: failing.duplicates() + other.duplicates(),
			poisoned: len(recs), recover: recovered}
		f.add("replayed", replayed)
		f.add("attempts_per_record", fastRetry.MaxAttempts)
		f.log(t)
	})
}
