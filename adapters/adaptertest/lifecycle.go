package adaptertest

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/middleware"
	"github.com/heraldbus/herald/transport"
)

// The edges of a service's life: a handler deployed after events were
// published (start position), a handler removed for good (delete), and a
// failure that outlasts the in-process retries (delayed redelivery).

func lifecycleCases(s *suite) []testCase {
	return []testCase{
		{"StartFromHistory", "new handlers: a handler subscribed with WithStartFrom(t) that never consumed before gets the events the transport still holds from t on (every one for the zero time), on a transport with history; one that exists keeps its position; without history it starts with new events", s.startFrom},
		{"DeleteHandler", "removed handlers: DeleteHandler refuses a subscribed name (ErrHandlerSubscribed); once deleted, the transport lists the handler no more and keeps nothing for it, and the name subscribed again starts with new events", s.deleteHandler},
		{"DelayedRetryGoesOn", "retries: an event the in-process attempts cannot fix is redelivered later through the transport while the worker handles the next events; attempts count on across redeliveries", s.delayedRetry},
		{"DelayedRetryPoisonsAtMaxAttempts", "retries: an event that fails every attempt is poisoned once MaxAttempts have failed, counted across redeliveries", s.delayedPoison},
	}
}

// waitMarker waits until r got an event tagged marker and returns the seqs it
// got before it, in order.
func (s *suite) waitMarker(t *testing.T, r *bustest.Recorder[Event], marker string) []int {
	t.Helper()
	var got []int
	bustest.Eventually(t, s.cfg.timeout, func() bool {
		got = got[:0]
		for _, e := range r.Events() {
			if e.Tag == marker {
				return true
			}
			got = append(got, e.Seq)
		}
		return false
	}, "marker %q", marker)
	return got
}

func (s *suite) startFrom(t *testing.T, be Backend) {
	tr := be(t)
	_, history := tr.(transport.History)
	b1 := bustest.New(t, bus.WithTransport(tr), fastRetry)
	// A handler that is down keeps the events in the stream (interest
	// retention keeps only what some consumer still needs).
	s.down(t, b1, "hist.keeper")
	s.publish(t, b1, 0, 5, "old")
	// Brokers keep millisecond timestamps (Kafka): the cut must fall in a
	// later millisecond than the old events, or those of the same
	// millisecond count as at or after it. Wait for the clock to pass the
	// next millisecond boundary (at most 1 ms).
	for last := time.Now().UnixMilli(); time.Now().UnixMilli() == last; {
		runtime.Gosched()
	}
	cut := time.Now() // after the PubAcks of 0-4, before the publish of 5
	s.publish(t, b1, 5, 5, "recent")

	b2 := s.bus(t, be)
	fromCut := bustest.Record[Event](t, b2, "hist.from-cut", bus.WithStartFrom(cut))
	all := bustest.Record[Event](t, b2, "hist.all", bus.WithStartFrom(time.Time{}))
	fresh := bustest.Record[Event](t, b2, "hist.fresh")
	s.publish(t, b2, 10, 1, "marker")
	want := map[string][]int{"hist.from-cut": {5, 6, 7, 8, 9}, "hist.all": {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, "hist.fresh": {}}
	if !history {
		// Memory holds no history: the option is accepted and the handler
		// starts with new events, as any other.
		want["hist.from-cut"], want["hist.all"] = []int{}, []int{}
	}
	for name, r := range map[string]*bustest.Recorder[Event]{"hist.from-cut": fromCut, "hist.all": all, "hist.fresh": fresh} {
		if got := s.waitMarker(t, r, "marker"); !slices.Equal(got, want[name]) {
			t.Errorf("%s got %v before the marker, want %v (history: %v)", name, got, want[name], history)
		}
	}
	if err := b2.Close(s.ctx(t)); err != nil {
		t.Fatal(err)
	}
	if !history {
		return
	}
	// The durable of hist.all exists now: subscribing it again with the
	// same option keeps its position (no second pass over the history).
	s.publish(t, b1, 11, 1, "while-down")
	b3 := s.bus(t, be)
	again := bustest.Record[Event](t, b3, "hist.all", bus.WithStartFrom(time.Time{}))
	s.publish(t, b3, 12, 1, "marker2")
	if got := s.waitMarker(t, again, "marker2"); !slices.Equal(got, []int{11}) {
		t.Errorf("an existing handler subscribed again with WithStartFrom got %v, want [11]: its position must be kept", got)
	}
}

// listed returns the info of handler name in b's transport, and whether it
// is listed.
func (s *suite) listed(t *testing.T, b *bus.Bus, name string, orphans bool) (bus.HandlerInfo, bool) {
	t.Helper()
	list := b.Handlers
	if orphans {
		list = b.OrphanHandlers
	}
	hs, err := list(s.ctx(t))
	if err != nil {
		t.Fatalf("list handlers: %v", err)
	}
	if !slices.IsSortedFunc(hs, func(a, b bus.HandlerInfo) int {
		return map[bool]int{true: -1, false: 1}[a.Name < b.Name]
	}) {
		t.Errorf("handlers not sorted by name: %+v", hs)
	}
	for _, h := range hs {
		if h.Name == name {
			return h, true
		}
	}
	return bus.HandlerInfo{}, false
}

func (s *suite) deleteHandler(t *testing.T, be Backend) {
	tr := be(t)
	_, known := tr.(transport.Handlers)
	if !known {
		t.Skip("the transport keeps no handler state (no transport.Handlers)")
	}
	b1 := bustest.New(t, bus.WithTransport(tr), fastRetry)
	gone := &bustest.Recorder[Event]{}
	sub, err := bus.Subscribe(b1, "del.gone", gone.Handle)
	if err != nil {
		t.Fatal(err)
	}
	s.publish(t, b1, 0, 1, "")
	gone.Wait(t, 1, s.cfg.timeout)
	if err := b1.DeleteHandler(s.ctx(t), "del.gone"); !errors.Is(err, bus.ErrHandlerSubscribed) {
		t.Fatalf("DeleteHandler of a subscribed name: %v, want ErrHandlerSubscribed", err)
	}
	if err := b1.DeleteHandler(s.ctx(t), "bad name"); !errors.Is(err, bus.ErrInvalidName) {
		t.Errorf("DeleteHandler of an invalid name: %v, want ErrInvalidName", err)
	}
	h, ok := s.listed(t, b1, "del.gone", false)
	if !ok || !slices.Contains(h.Topics, "adaptertest.Event") {
		t.Errorf("a subscribed handler is not listed with its topic: %+v (listed: %v)", h, ok)
	}
	if _, ok := s.listed(t, b1, "del.gone", true); ok {
		t.Error("a handler subscribed on this bus is listed as an orphan")
	}

	// A handler stopped but not deleted: durable transports keep its state
	// and its events, and list it as an orphan.
	s.down(t, b1, "del.orphan")
	if err := sub.Delete(s.ctx(t)); err != nil {
		t.Fatalf("Subscription.Delete: %v", err)
	}
	s.publish(t, b1, 1, 3, "while-gone")
	if s.cfg.durable {
		// A broker may count a consumer's pending events a moment after it
		// acknowledged the publish (NATS updates them asynchronously).
		bustest.Eventually(t, s.cfg.timeout, func() bool {
			h, ok = s.listed(t, b1, "del.orphan", true)
			return ok && h.Pending >= 3
		}, "a stopped handler of a durable transport listed with 3 pending (last seen: %+v)", &h)
	}
	h, ok = s.listed(t, b1, "del.orphan", true)
	if !s.cfg.durable && ok {
		t.Errorf("a stopped handler of a transport that keeps nothing is listed: %+v", h)
	}
	if err := b1.DeleteHandler(s.ctx(t), "del.orphan"); err != nil {
		t.Fatalf("DeleteHandler of a stopped handler: %v", err)
	}
	for _, name := range []string{"del.gone", "del.orphan"} {
		if h, ok := s.listed(t, b1, name, false); ok {
			t.Errorf("%s is listed after its deletion: %+v", name, h)
		}
	}
	if err := b1.DeleteHandler(s.ctx(t), "del.never-existed"); err != nil {
		t.Errorf("DeleteHandler of a name with no state: %v, want nil", err)
	}

	// Subscribed again, the deleted names start with new events: nothing of
	// what was published while they were gone.
	b2 := s.bus(t, be)
	for _, name := range []string{"del.gone", "del.orphan"} {
		r := bustest.Record[Event](t, b2, name)
		s.publish(t, b2, 10, 1, "marker-"+name)
		if got := s.waitMarker(t, r, "marker-"+name); len(got) != 0 {
			t.Errorf("%s, deleted and subscribed again, got %v published while it was gone", name, got)
		}
	}
}

func (s *suite) delayedRetry(t *testing.T, be Backend) {
	b := s.bus(t, be)
	const n = 10
	var mu sync.Mutex
	var handled []int  // seqs, in the order their handling succeeded
	var attempts []int // of seq 0, in order
	lastDone := false  // seq n-1 handled
	r := &bustest.Recorder[Event]{Fail: func(ctx context.Context, e Event) error {
		m, _ := handlers.FromContext(ctx)
		mu.Lock()
		defer mu.Unlock()
		if e.Seq == 0 {
			attempts = append(attempts, m.Attempt)
			// It fails until the worker has handled every later event: only
			// a retry that lets the worker go on gets there.
			if !lastDone {
				return errors.New("dependency down")
			}
		}
		lastDone = lastDone || e.Seq == n-1
		handled = append(handled, e.Seq)
		return nil
	}}
	policy := middleware.RetryPolicy{MaxAttempts: 12, ImmediateAttempts: 2, InitialInterval: time.Millisecond,
		RedeliveryDelay: 20 * time.Millisecond, MaxRedeliveryDelay: 100 * time.Millisecond}
	if _, err := bus.Subscribe(b, "retry.delayed", r.Handle, bus.WithRetry(policy)); err != nil {
		t.Fatal(err)
	}
	s.publish(t, b, 0, n, "")
	r.Wait(t, n, s.cfg.timeout)
	mu.Lock()
	defer mu.Unlock()
	if handled[len(handled)-1] != 0 {
		t.Errorf("handled in the order %v: the failing event 0 should come last, after the ones behind it", handled)
	}
	if len(attempts) < 3 || attempts[0] != 1 || attempts[1] != 2 {
		t.Fatalf("attempts of the failing event %v: want 1 and 2 in process, then redeliveries", attempts)
	}
	for i := 1; i < len(attempts); i++ {
		if attempts[i] != attempts[i-1]+1 {
			t.Errorf("attempts of the failing event %v: want them counted on across redeliveries", attempts)
		}
	}
	if recs, err := b.Poison().List(s.ctx(t), "retry.delayed"); err != nil || len(recs) != 0 {
		t.Errorf("poison records %v, %v: a retry that succeeded must leave none", recs, err)
	}
}

func (s *suite) delayedPoison(t *testing.T, be Backend) {
	b := s.bus(t, be)
	var mu sync.Mutex
	var attempts []int
	if _, err := bus.Subscribe(b, "retry.doomed", func(ctx context.Context, e Event) error {
		m, _ := handlers.FromContext(ctx)
		mu.Lock()
		attempts = append(attempts, m.Attempt)
		mu.Unlock()
		return errors.New("always")
	}, bus.WithRetry(middleware.RetryPolicy{MaxAttempts: 5, ImmediateAttempts: 2, InitialInterval: time.Millisecond,
		RedeliveryDelay: 10 * time.Millisecond, MaxRedeliveryDelay: 20 * time.Millisecond})); err != nil {
		t.Fatal(err)
	}
	s.publish(t, b, 0, 1, "")
	rec := s.poison(t, b, "retry.doomed", 1)[0]
	mu.Lock()
	defer mu.Unlock()
	if rec.Attempts != 5 || !slices.Equal(attempts, []int{1, 2, 3, 4, 5}) {
		t.Errorf("poisoned after attempts %v (record says %d), want 1 to 5 across redeliveries", attempts, rec.Attempts)
	}
}
