package memory_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/adapters/memory"
)

func TestNackRedeliversAfterAGrowingDelay(t *testing.T) {
	tr := memory.New(memory.WithRedeliveryDelay(20 * time.Millisecond))
	defer tr.Close()
	q, err := tr.Join("g", "t")
	if err != nil {
		t.Fatal(err)
	}
	defer q.Leave()
	if err := tr.Send(context.Background(), "t", &memory.Delivery{ID: "1"}); err != nil {
		t.Fatal(err)
	}
	var gaps []time.Duration
	last := time.Now()
	for i := range 3 {
		select {
		case it := <-q.C():
			if it.Redeliveries != i {
				t.Errorf("delivery %d has Redeliveries %d", i, it.Redeliveries)
			}
			gaps = append(gaps, time.Since(last))
			last = time.Now()
			q.Nack(it)
		case <-time.After(5 * time.Second):
			t.Fatal("nacked delivery never came back")
		}
	}
	// 0, then ≥20ms, then ≥40ms: never a tight loop.
	if gaps[1] < 20*time.Millisecond || gaps[2] < 40*time.Millisecond {
		t.Errorf("redelivery gaps %v, want ≥20ms then ≥40ms", gaps)
	}
	<-q.C() // the last nack's redelivery, so its timer is done
}

func TestSendBlocksWhenFullAndCloseUnblocks(t *testing.T) {
	tr := memory.New(memory.WithBufferSize(2))
	q, _ := tr.Join("g", "t")
	for range 2 {
		if err := tr.Send(context.Background(), "t", &memory.Delivery{}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := tr.Send(ctx, "t", &memory.Delivery{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("send to a full queue: %v", err)
	}
	done := make(chan error)
	go func() { done <- tr.Send(context.Background(), "t", &memory.Delivery{}) }()
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, memory.ErrClosed) {
			t.Errorf("blocked send after close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock a blocked Send")
	}
	q.Leave()
	if err := tr.Send(context.Background(), "t", &memory.Delivery{}); !errors.Is(err, memory.ErrClosed) {
		t.Errorf("send after close: %v", err)
	}
	if _, err := tr.Join("g", "t"); !errors.Is(err, memory.ErrClosed) {
		t.Errorf("join after close: %v", err)
	}
}

func TestLeavingDropsTheGroup(t *testing.T) {
	tr := memory.New()
	defer tr.Close()
	q, _ := tr.Join("g", "t")
	if !tr.Subscribed("t") {
		t.Fatal("not subscribed after Join")
	}
	q.Leave()
	q.Leave() // idempotent
	if tr.Subscribed("t") {
		t.Error("still subscribed after the last member left")
	}
	if err := tr.Send(context.Background(), "t", &memory.Delivery{}); err != nil {
		t.Errorf("send with no group: %v", err)
	}
}

func TestPeerSharesTheBrokerUntilTheLastCloses(t *testing.T) {
	a := memory.New()
	b := a.Peer()
	qa, _ := a.Join("g", "t")
	defer qa.Leave()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(context.Background(), "t", &memory.Delivery{ID: "x"}); err != nil {
		t.Fatalf("peer closed with its sibling: %v", err)
	}
	if it := <-qa.C(); it.ID != "x" {
		t.Errorf("got %q", it.ID)
	}
	_ = b.Close()
	select {
	case <-qa.Done():
	default:
		t.Error("broker still open after every handle closed")
	}
}

func TestWatermillSubscriberConsumerGroups(t *testing.T) {
	tr := memory.New()
	defer tr.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	subA, _ := tr.Subscriber("a")
	subB, _ := tr.Subscriber("b")
	defer subA.Close()
	defer subB.Close()
	var chans []<-chan *message.Message
	for _, s := range []message.Subscriber{subA, subA, subB} { // a has two members, b one
		ch, err := s.Subscribe(ctx, "topic")
		if err != nil {
			t.Fatal(err)
		}
		chans = append(chans, ch)
	}
	const n = 50
	for i := range n {
		m := message.NewMessage(string(rune('A'+i%26))+time.Now().String(), []byte("p"))
		m.Metadata.Set("k", "v")
		if err := tr.Publisher().Publish("topic", m); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	counts := make([]int, 3)
	all := make(chan struct{})
	var wg sync.WaitGroup
	for i, ch := range chans {
		wg.Go(func() {
			for {
				select {
				case m := <-ch:
					if m.Metadata.Get("k") != "v" {
						t.Error("metadata lost")
					}
					m.Ack()
					mu.Lock()
					counts[i]++
					if counts[0]+counts[1] == n && counts[2] == n {
						close(all)
					}
					mu.Unlock()
				case <-all:
					return
				case <-time.After(5 * time.Second):
					return
				}
			}
		})
	}
	wg.Wait()
	if counts[0]+counts[1] != n || counts[2] != n {
		t.Errorf("counts %v: group a (two members) must share %d, group b get all %d", counts, n, n)
	}
	if err := subA.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := subA.Subscribe(ctx, "topic"); !errors.Is(err, memory.ErrClosed) {
		t.Errorf("subscribe on a closed subscriber: %v", err)
	}
}

func TestWatermillNackRedelivers(t *testing.T) {
	tr := memory.New(memory.WithRedeliveryDelay(time.Millisecond))
	defer tr.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub, _ := tr.Subscriber("g")
	defer sub.Close()
	ch, _ := sub.Subscribe(ctx, "t")
	if err := tr.Publisher().Publish("t", message.NewMessage("m1", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	first := <-ch
	first.Nack()
	select {
	case again := <-ch:
		if again.UUID != "m1" {
			t.Errorf("got %q", again.UUID)
		}
		again.Ack()
	case <-time.After(5 * time.Second):
		t.Fatal("nacked message not redelivered")
	}
}

func TestPublisherRefusesOversizeMessages(t *testing.T) {
	tr := memory.New(memory.WithMaxMessageSize(100))
	defer tr.Close()
	q, _ := tr.Join("g", "t")
	defer q.Leave()
	big := message.NewMessage("big", make([]byte, 90))
	big.Metadata.Set("key", "twelve bytes")
	err := tr.Publisher().Publish("t", big)
	var marker interface{ EventTooLarge() bool }
	if !errors.Is(err, memory.ErrTooLarge) || !errors.As(err, &marker) {
		t.Fatalf("102-byte message with a 100-byte limit: %v", err)
	}
	if q.Len() != 0 {
		t.Error("the refused message was queued")
	}
	if err := tr.Publisher().Publish("t", message.NewMessage("ok", make([]byte, 100))); err != nil {
		t.Errorf("a message at the limit: %v", err)
	}
}

// A consumer that nacks everything (an open circuit breaker) must not let the
// backlog grow without bound: publishers block once nacked events fill the
// buffer.
func TestNackedEventsCountAgainstTheBuffer(t *testing.T) {
	const buffer = 8
	tr := memory.New(memory.WithBufferSize(buffer), memory.WithRedeliveryDelay(time.Hour))
	defer tr.Close()
	q, _ := tr.Join("g", "t")
	stop := make(chan struct{})
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for {
			select {
			case it := <-q.C():
				q.Nack(it)
			case <-stop:
				return
			case <-q.Done():
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	published := 0
	for tr.Send(ctx, "t", &memory.Delivery{}) == nil {
		published++
	}
	if published > 2*buffer+1 {
		t.Errorf("published %d events into a buffer of %d while every one was nacked", published, buffer)
	}
	close(stop)
	q.Leave() // releases a consumer waiting in Nack
	<-consumed
}
