package membroker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/heraldbus/herald/internal/membroker"
	"github.com/heraldbus/herald/transport"
)

func cfg() membroker.Config {
	return membroker.Config{Buffer: 1024, Delay: 100 * time.Millisecond, MaxSize: 1 << 20}
}

// next takes the next item or fails the test after a deadline.
func next(t *testing.T, q *membroker.Queue) membroker.Item {
	t.Helper()
	stop := make(chan struct{})
	timer := time.AfterFunc(5*time.Second, func() { close(stop) })
	defer timer.Stop()
	it, ok := q.Next(stop)
	if !ok {
		t.Fatal("no item within 5s")
	}
	return it
}

func TestNackRedeliversAfterAGrowingDelay(t *testing.T) {
	tr := membroker.New(membroker.Config{Buffer: 1024, Delay: 20 * time.Millisecond, MaxSize: 1 << 20})
	defer tr.Close()
	q, err := tr.Join("g", "t")
	if err != nil {
		t.Fatal(err)
	}
	defer q.Leave()
	if err := tr.Send(context.Background(), "t", &membroker.Delivery{ID: "1"}); err != nil {
		t.Fatal(err)
	}
	var gaps []time.Duration
	last := time.Now()
	for i := range 3 {
		it := next(t, q)
		if it.Redeliveries != i {
			t.Errorf("delivery %d has Redeliveries %d", i, it.Redeliveries)
		}
		gaps = append(gaps, time.Since(last))
		last = time.Now()
		q.Nack(it, 0)
	}
	// 0, then ≥20ms, then ≥40ms: never a tight loop.
	if gaps[1] < 20*time.Millisecond || gaps[2] < 40*time.Millisecond {
		t.Errorf("redelivery gaps %v, want ≥20ms then ≥40ms", gaps)
	}
	next(t, q) // the last nack's redelivery, so its timer is done
}

func TestSendBlocksWhenFullAndCloseUnblocks(t *testing.T) {
	tr := membroker.New(membroker.Config{Buffer: 2, Delay: time.Millisecond, MaxSize: 1 << 20})
	q, _ := tr.Join("g", "t")
	for range 2 {
		if err := tr.Send(context.Background(), "t", &membroker.Delivery{}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := tr.Send(ctx, "t", &membroker.Delivery{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("send to a full queue: %v", err)
	}
	done := make(chan error)
	go func() { done <- tr.Send(context.Background(), "t", &membroker.Delivery{}) }()
	tr.Close()
	select {
	case err := <-done:
		if !errors.Is(err, transport.ErrClosed) {
			t.Errorf("blocked send after close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock a blocked Send")
	}
	q.Leave()
	if err := tr.Send(context.Background(), "t", &membroker.Delivery{}); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("send after close: %v", err)
	}
	if _, err := tr.Join("g", "t"); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("join after close: %v", err)
	}
}

func TestLeavingDropsTheGroup(t *testing.T) {
	tr := membroker.New(cfg())
	defer tr.Close()
	q, _ := tr.Join("g", "t")
	if !tr.Subscribed("g", "t") {
		t.Fatal("not subscribed after Join")
	}
	q.Leave()
	q.Leave() // idempotent
	if tr.Subscribed("g", "t") {
		t.Error("still subscribed after the last member left")
	}
	if err := tr.Send(context.Background(), "t", &membroker.Delivery{}); err != nil {
		t.Errorf("send with no group: %v", err)
	}
}

func TestPeerSharesTheBrokerUntilTheLastCloses(t *testing.T) {
	a := membroker.New(cfg())
	b := a.Peer()
	qa, _ := a.Join("g", "t")
	defer qa.Leave()
	a.Close()
	if err := b.Send(context.Background(), "t", &membroker.Delivery{ID: "x"}); err != nil {
		t.Fatalf("peer closed with its sibling: %v", err)
	}
	if it := next(t, qa); it.ID != "x" {
		t.Errorf("got %q", it.ID)
	}
	b.Close()
	select {
	case <-qa.Done():
	default:
		t.Error("broker still open after every handle closed")
	}
}

// A consumer that nacks everything (an open circuit breaker) must not let the
// backlog grow without bound: once a buffer's worth of nacked events wait,
// the queue stops taking new ones and publishers block, however patient they
// are and however short the redelivery delay (a short one used to park a
// goroutine per event in a blocked requeue).
func TestNackedEventsCountAgainstTheBuffer(t *testing.T) {
	const buffer = 8
	for _, delay := range []time.Duration{time.Millisecond, time.Hour} {
		tr := membroker.New(membroker.Config{Buffer: buffer, Delay: delay, MaxSize: 1 << 20})
		q, _ := tr.Join("g", "t")
		stop := make(chan struct{})
		consumed := make(chan struct{})
		go func() {
			defer close(consumed)
			for {
				it, ok := q.Next(stop)
				if !ok {
					return
				}
				q.Nack(it, 0)
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		published := 0
		for tr.Send(ctx, "t", &membroker.Delivery{}) == nil {
			published++
		}
		cancel()
		if published > 2*buffer+1 {
			t.Errorf("delay %v: published %d events into a buffer of %d while every one was nacked", delay, published, buffer)
		}
		if n := q.Len(); n > 2*buffer {
			t.Errorf("delay %v: queue holds %d events", delay, n)
		}
		close(stop)
		<-consumed
		q.Leave()
		tr.Close()
	}
}
