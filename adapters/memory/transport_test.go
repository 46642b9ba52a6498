package memory_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/adapters/memory"
	"github.com/heraldbus/herald/transport"
)

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
	if _, err := subA.Subscribe(ctx, "topic"); !errors.Is(err, transport.ErrClosed) {
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
	sub, err := tr.Subscriber("g")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ch, err := sub.Subscribe(context.Background(), "t")
	if err != nil {
		t.Fatal(err)
	}
	big := message.NewMessage("big", make([]byte, 90))
	big.Metadata.Set("key", "twelve bytes")
	if err := tr.Publisher().Publish("t", big); !errors.Is(err, transport.ErrTooLarge) {
		t.Fatalf("102-byte message with a 100-byte limit: %v", err)
	}
	if err := tr.Publisher().Publish("t", message.NewMessage("ok", make([]byte, 100))); err != nil {
		t.Errorf("a message at the limit: %v", err)
	}
	if m := <-ch; m.UUID != "ok" { // the refused one was never queued
		t.Errorf("first message queued: %q", m.UUID)
	}
}
