package faults_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hnats "github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/handlers"
)

// Fault 26: one of three replicas of a handler ordering by key dies mid-stream
// (its connection closed abruptly: nothing acked, nacked or drained). Each
// key's events must still be handled in publish order, and none lost: the
// events the dead replica held come again after AckWait, to another replica,
// before the later events of their partitions. On the embedded server, and
// on the machine's server (nats-server 2.9 there) when NATS_URL is set.
func TestKeyedReplicaKilled(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		keyedReplicaKilled(t, natsConfig(natstest.New(t).URL()), "embedded")
	})
	if os.Getenv("NATS_URL") != "" {
		t.Run("machine", func(t *testing.T) {
			m := natstest.NewMachine(t, "keyedkill")
			cfg := natsConfig(m.URL)
			cfg.StreamName, cfg.SubjectPrefix = m.StreamName, m.SubjectPrefix
			keyedReplicaKilled(t, cfg, "machine")
		})
	}
}

func keyedReplicaKilled(t *testing.T, cfg hnats.Config, server string) {
	const (
		replicas, keys, per = 3, 50, 60
		n                   = keys * per
		name                = "keyed.kill"
		killAfter           = n / 4
	)
	cfg.AckWait = time.Second
	newTransport := func() *hnats.Transport { return natsTransport(t, cfg) }
	opts := func(tr *hnats.Transport) []bus.Option {
		return []bus.Option{bus.WithTransport(tr), bus.WithDefaultRetry(fastRetry), bus.WithLogger(logger(t))}
	}

	var order bustest.KeyOrder
	var mu sync.Mutex
	succeeded := map[string]int{} // by key/seq
	var handled atomic.Int32
	var dead atomic.Bool
	var inVictim atomic.Int32
	progress := make(chan struct{}, 1)
	handler := func(victim bool) func(context.Context, Event) error {
		return func(ctx context.Context, e Event) error {
			if victim {
				if dead.Load() {
					<-ctx.Done() // a dead process does nothing more
					return ctx.Err()
				}
				inVictim.Add(1)
				defer inVictim.Add(-1)
			}
			m, _ := handlers.FromContext(ctx)
			if !order.Step(m.OrderingKey, e.Seq) {
				t.Errorf("key %s: step %d out of order", m.OrderingKey, e.Seq)
			}
			if err := work(ctx, time.Millisecond); err != nil {
				return err
			}
			mu.Lock()
			k := fmt.Sprint(m.OrderingKey, "/", e.Seq)
			succeeded[k]++
			if succeeded[k] == 1 {
				handled.Add(1)
			}
			mu.Unlock()
			select {
			case progress <- struct{}{}:
			default:
			}
			return nil
		}
	}
	subscribe := func(b *bus.Bus, victim bool) {
		if _, err := bus.Subscribe(b, name, handler(victim), bus.WithOrderingByKey(), bus.WithConcurrency(4)); err != nil {
			t.Fatal(err)
		}
	}

	// The victim: closed by the test with a short deadline (its connection
	// is gone, so errors are expected).
	victimTr := newTransport()
	victim, err := bus.New(opts(victimTr)...)
	if err != nil {
		t.Fatal(err)
	}
	subscribe(victim, true)
	if err := victim.Start(ctxFor(t, wait)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = victim.Close(ctx)
	})
	var live []*bus.Bus
	for range replicas - 1 {
		b := bustest.New(t, opts(newTransport())...)
		subscribe(b, false)
		live = append(live, b)
	}
	pub := bustest.New(t, opts(newTransport())...)

	var wg sync.WaitGroup
	for k := range keys {
		wg.Go(func() {
			for i := range per {
				if err := bus.Publish(ctxFor(t, wait), pub, Event{Seq: i}, bus.WithOrderingKey(fmt.Sprint("k", k))); err != nil {
					t.Errorf("publish k%d/%d: %v", k, i, err)
					return
				}
			}
		})
	}
	for handled.Load() < killAfter {
		select {
		case <-progress:
		case <-time.After(wait):
			t.Fatalf("only %d events handled before the kill", handled.Load())
		}
	}
	held := inVictim.Load()
	dead.Store(true)
	killed := time.Now()
	victimTr.Conn().Close()
	atKill := handled.Load()
	wg.Wait()
	bustest.Eventually(t, wait, func() bool { return handled.Load() == n }, "every event handled (have %d of %d)", handled.Load(), n)
	recovered := time.Since(killed)

	mu.Lock()
	dups := 0
	for _, c := range succeeded {
		dups += c - 1
	}
	mu.Unlock()
	f := figures{fault: "26-keyed-replica-killed", transport: "nats-" + server, handlers: 1, sent: n,
		delivered: int(handled.Load()), dups: dups, recover: recovered}
	f.poisoned = len(poisonList(t, live[0], name))
	f.add("replicas", replicas)
	f.add("keys", keys)
	f.add("partitions", victimTr.Config().Partitions)
	f.add("out_of_order", order.OutOfOrder())
	f.add("handled_at_kill", atKill)
	f.add("in_victim_handler_at_kill", held)
	f.add("ack_wait", cfg.AckWait)
	f.log(t)
	if o := order.OutOfOrder(); o != 0 {
		t.Errorf("%d steps out of order", o)
	}
	if f.poisoned != 0 {
		t.Errorf("%d poison records", f.poisoned)
	}
}
