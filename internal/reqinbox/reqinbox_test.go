package reqinbox

import (
	"context"
	"errors"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/heraldbus/herald/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A send is taken by a reader; sends waiting when the inbox closes give up
// (false, no panic on the closed channel); a send after Close gives up at
// once; ctx and abort end a wait.
func TestInbox(t *testing.T) {
	in := New()
	got := make(chan transport.Request, 1)
	go func() { got <- <-in.C() }()
	if ok, err := in.Send(context.Background(), nil, transport.Request{}); !ok || err != nil {
		t.Fatalf("taken: %v %v", ok, err)
	}
	<-got

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if ok, err := in.Send(ctx, nil, transport.Request{}); ok || !errors.Is(err, context.Canceled) {
		t.Fatalf("ctx ended: %v %v", ok, err)
	}
	abort := make(chan struct{})
	close(abort)
	if ok, err := in.Send(context.Background(), abort, transport.Request{}); ok || err != nil {
		t.Fatalf("aborted: %v %v", ok, err)
	}

	var wg sync.WaitGroup
	waiting := make(chan struct{}, 8)
	for range 8 {
		wg.Go(func() {
			waiting <- struct{}{}
			if ok, err := in.Send(context.Background(), nil, transport.Request{}); ok || err != nil {
				t.Errorf("send across Close: %v %v", ok, err)
			}
		})
	}
	for range 8 {
		<-waiting
	}
	in.Close()
	in.Close()
	wg.Wait()
	if _, open := <-in.C(); open {
		t.Fatal("the channel is open after Close")
	}
	if ok, err := in.Send(context.Background(), nil, transport.Request{}); ok || err != nil {
		t.Fatalf("after Close: %v %v", ok, err)
	}
}
