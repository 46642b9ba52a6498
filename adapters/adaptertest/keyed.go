package adaptertest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/handlers"
)

// KeyedReplicas says the transport keeps the events of one ordering key in
// order across the replicas of a handler (buses on one broker sharing the
// handler's name), not only within one process (NATS, with partitions); the
// ordering case then runs three replicas.
func KeyedReplicas() Option { return optionFunc(func(c *config) { c.keyedReplicas = true }) }

// errFlaky is the transient failure of orderingByKeyReplicas.
var errFlaky = errors.New("adaptertest: transient failure")

// orderingByKeyReplicas: 50 keys, 100 events each, handled by 3 replicas
// (1 where the transport orders keys in one process only), about one first
// attempt in ten failing once, and one event poisoned.
func (s *suite) orderingByKeyReplicas(t *testing.T, be Backend) {
	const keys, per, name = 50, 100, "keyed.replicas"
	replicas := 1
	if s.cfg.keyedReplicas {
		replicas = 3
	}
	var order bustest.KeyOrder
	var handled, running, peak atomic.Int32
	var poisoned atomic.Bool
	byReplica := make([]atomic.Int32, replicas)
	var pub *bus.Bus
	for r := range replicas {
		b := s.bus(t, be)
		if r == 0 {
			pub = b
		}
		if _, err := bus.Subscribe(b, name, func(ctx context.Context, e Event) error {
			n := running.Add(1)
			defer running.Add(-1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			m, _ := handlers.FromContext(ctx)
			if !order.Step(m.OrderingKey, e.Seq) {
				t.Errorf("key %s: step %d out of order (replica %d)", m.OrderingKey, e.Seq, r)
			}
			if m.OrderingKey == "k7" && e.Seq == per/2 {
				poisoned.Store(true)
				return bus.Permanent(errors.New("adaptertest: poisoned on purpose"))
			}
			if m.Attempt == 1 && rand.N(10) == 0 {
				return errFlaky
			}
			byReplica[r].Add(1)
			handled.Add(1)
			return nil
		}, bus.WithConcurrency(4), bus.WithOrderingByKey()); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for k := range keys {
		wg.Go(func() {
			for i := range per {
				if err := bus.Publish(s.ctx(t), pub, Event{Seq: i}, bus.WithOrderingKey(fmt.Sprint("k", k))); err != nil {
					t.Errorf("publish k%d/%d: %v", k, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	bustest.Eventually(t, s.cfg.timeout, func() bool { return handled.Load() == keys*per-1 },
		"%d events handled", keys*per-1)
	s.poison(t, pub, name, 1)
	if got := order.Distinct(); got != keys*per {
		t.Errorf("%d distinct events attempted, want %d", got, keys*per)
	}
	if n := order.OutOfOrder(); n != 0 {
		t.Errorf("%d steps out of order", n)
	}
	if !poisoned.Load() {
		t.Error("the event to poison was never handled")
	}
	for r := range byReplica {
		if byReplica[r].Load() == 0 {
			t.Errorf("replica %d handled no event", r)
		}
	}
	if peak.Load() < 2 {
		t.Errorf("peak parallelism %d: different keys should run in parallel", peak.Load())
	}
	t.Logf("%d replicas: %d events handled (%v per replica), peak parallelism %d", replicas, handled.Load(), counts(byReplica), peak.Load())
}

func counts(cs []atomic.Int32) []int32 {
	out := make([]int32, len(cs))
	for i := range cs {
		out[i] = cs[i].Load()
	}
	return out
}
