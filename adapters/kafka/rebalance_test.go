package kafka_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldbus/herald/adapters/kafka"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/notify"
)

// Order is the event of the rebalance test.
type Order struct {
	Key string `json:"key"`
	Seq int    `json:"seq"` // per key, from 0
}

// keyLog records, per ordering key, the Seqs in the order they were handled
// (by any replica) and which replica handled each.
type keyLog struct {
	mu      sync.Mutex
	seqs    map[string][]int
	by      map[string]int // replica name -> handled
	total   int
	changed notify.Changed
	// hold, when set, is waited on by replica a's handler once total
	// reached holdAt: a does not work through the backlog before b joins.
	hold   chan struct{}
	holdAt int
	firstB time.Time // when b handled its first event
}

func newKeyLog() *keyLog { return &keyLog{seqs: map[string][]int{}, by: map[string]int{}} }

func (l *keyLog) handler(replica string) func(context.Context, Order) error {
	return func(ctx context.Context, o Order) error {
		if m, _ := handlers.FromContext(ctx); m.OrderingKey != o.Key {
			return fmt.Errorf("ordering key %q on an event of key %q", m.OrderingKey, o.Key)
		}
		if replica == "a" {
			l.mu.Lock()
			hold := l.hold
			if l.total < l.holdAt {
				hold = nil
			}
			l.mu.Unlock()
			if hold != nil {
				select {
				case <-hold:
				case <-ctx.Done(): // the test failed before b joined
					return ctx.Err()
				}
			}
		}
		time.Sleep(3 * time.Millisecond) // work: keeps events in flight at each rebalance
		l.mu.Lock()
		defer l.mu.Unlock()
		l.seqs[o.Key] = append(l.seqs[o.Key], o.Seq)
		l.by[replica]++
		if replica == "b" && l.firstB.IsZero() {
			l.firstB = time.Now()
		}
		l.total++
		l.changed.Broadcast()
		return nil
	}
}

// waitTotal waits until n handlings happened.
func (l *keyLog) waitTotal(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	total := 0
	if !l.changed.Wait(&l.mu, func() bool { total = l.total; return total >= n }, ctx.Done()) {
		t.Fatalf("%d events handled within %v, want %d", total, timeout, n)
	}
}

// dups returns how many handlings repeated an event handled before, and
// fails t if a key's events were first handled out of publish order.
func (l *keyLog) dups(t *testing.T) int {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for key, seqs := range l.seqs {
		next := 0 // the next seq never handled before
		for i, s := range seqs {
			switch {
			case s == next:
				next++
			case s < next:
				n++
			default:
				t.Fatalf("key %s: seq %d handled before seq %d (position %d of %v)", key, s, next, i, seqs[max(0, i-5):min(i+3, len(seqs))])
			}
		}
	}
	return n
}

// joinHook is a kgo hook that calls itself when its client sends a
// JoinGroup request.
type joinHook func()

func (h joinHook) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if err == nil && key == (&kmsg.JoinGroupRequest{}).Key() {
		h()
	}
}

// A replica of a handler joins mid-stream, on a topic of 4 partitions: the
// partitions that move wait for their events in flight, so every event is
// handled once, in publish order per key. Then the first replica leaves
// mid-stream: nothing is lost and each key's events are first handled in
// publish order; the events that replica had not settled when it stopped
// (the bus nacks those it had not started) hold its partitions' commit
// points, so their new owner handles them, and the settled ones after them,
// again.
func TestRebalanceKeepsOrderPerKey(t *testing.T) {
	const keys, perKey = 16, 150
	const n = keys * perKey
	for name, newBroker := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			b := newBroker(t)
			edit := func(c *kafka.Config) {
				c.Partitions, c.SessionTimeout = 4, 1500*time.Millisecond
				// Members learn of a rebalance at their next heartbeat.
				c.ClientOptions = []kgo.Opt{kgo.HeartbeatInterval(100 * time.Millisecond)}
			}
			log := newKeyLog()
			// Replica a waits, past a quarter of the stream, until b asks to
			// join the group: on a loaded machine, making b's bus, topics and
			// clients took longer than a took to handle the whole backlog
			// ("the stream ended before b got partitions").
			joining := make(chan struct{})
			log.hold, log.holdAt = joining, n/4
			var joinOnce sync.Once
			var joinedAt atomic.Int64
			editB := func(c *kafka.Config) {
				edit(c)
				c.ClientOptions = append(c.ClientOptions, kgo.WithHooks(joinHook(func() {
					joinOnce.Do(func() { joinedAt.Store(time.Now().UnixNano()); close(joining) })
				})))
			}
			replica := func(name string) *bus.Bus {
				t.Helper()
				e := edit
				if name == "b" {
					e = editB
				}
				rb, err := bus.New(bus.WithTransport(b.transport(t, e)))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := bus.Subscribe(rb, "rebalance.h", log.handler(name), bus.WithConcurrency(3), bus.WithOrderingByKey()); err != nil {
					t.Fatal(err)
				}
				if err := rb.Start(context.Background()); err != nil {
					t.Fatal(err)
				}
				return rb
			}
			closeBus := func(rb *bus.Bus) {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if err := rb.Close(ctx); err != nil {
					t.Errorf("close a replica: %v", err)
				}
			}
			pub := bustest.New(t, bus.WithTransport(b.transport(t, edit)))
			a := replica("a")
			// The whole stream first: the replicas then work through a backlog
			// that outlasts the join and the leave.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for i := range perKey {
				for k := range keys {
					key := fmt.Sprintf("k%02d", k)
					if err := bus.Publish(ctx, pub, Order{Key: key, Seq: i}, bus.WithOrderingKey(key)); err != nil {
						t.Fatalf("publish: %v", err)
					}
				}
			}
			log.waitTotal(t, n/8, time.Minute)
			joined := replica("b") // a replica joins: partitions move from a to b
			midStream := func(what string, cond func(byB, total int) bool) {
				t.Helper()
				ended := false
				bustest.Eventually(t, time.Minute, func() bool {
					log.mu.Lock()
					defer log.mu.Unlock()
					ended = log.total >= n
					return ended || cond(log.by["b"], log.total)
				}, "%s", what)
				if ended {
					t.Fatalf("the stream ended before %s: the test needs a longer backlog", what)
				}
			}
			midStream("b got partitions", func(byB, _ int) bool { return byB >= 50 })
			if d := log.dups(t); d != 0 {
				t.Errorf("%d events handled twice across the join: a moved partition must wait for its events in flight", d)
			}
			closeBus(a) // a leaves mid-stream: its partitions move to b
			log.mu.Lock()
			left := n - log.total
			log.mu.Unlock()
			if left <= 0 {
				t.Fatal("the stream ended before a left: the test needs a longer backlog")
			}
			bustest.Eventually(t, time.Minute, func() bool {
				log.mu.Lock()
				defer log.mu.Unlock()
				for k := range keys {
					if seqs := log.seqs[fmt.Sprintf("k%02d", k)]; len(seqs) == 0 || seqs[len(seqs)-1] != perKey-1 {
						return false
					}
				}
				return true
			}, "every key's last event handled")
			closeBus(joined)
			dups := log.dups(t)
			log.mu.Lock()
			defer log.mu.Unlock()
			for key, seqs := range log.seqs {
				if len(seqs) < perKey {
					t.Errorf("key %s: %d handlings of %d events", key, len(seqs), perKey)
				}
			}
			t.Logf("FIGURES rebalance events=%d handled=%d duplicates=%d by_a=%d by_b=%d left_at_leave=%d join_to_first_b=%v",
				n, log.total, dups, log.by["a"], log.by["b"], left, log.firstB.Sub(time.Unix(0, joinedAt.Load())).Round(time.Millisecond))
		})
	}
}
