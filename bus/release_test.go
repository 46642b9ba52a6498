package bus_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/adapters/memory"
	"github.com/heraldbus/herald/bus"
)

// slowRelease is a remote transport whose subscribers' Close waits until
// release is closed, as a Kafka member's last commit and group leave take
// their time on a loaded machine.
type slowRelease struct {
	remoteTransport
	closing chan struct{} // closed when a subscriber's Close begins
	once    sync.Once
	release chan struct{}
}

func (r *slowRelease) Subscriber(name string) (message.Subscriber, error) {
	sub, err := r.remoteTransport.Subscriber(name)
	if err != nil {
		return nil, err
	}
	return slowSub{Subscriber: sub, r: r}, nil
}

type slowSub struct {
	message.Subscriber
	r *slowRelease
}

func (s slowSub) Close() error {
	s.r.once.Do(func() { close(s.r.closing) })
	<-s.r.release
	return s.Subscriber.Close()
}

// A handler interrupted by Close's deadline returns at once; the transport
// then takes longer than Stop's grace to release its consumer. Close must
// wait for the release and report no error: the handler is not "still
// running" (Kafka's CloseDeadlineNoPoison failed so on a loaded machine).
func TestCloseDeadlineWaitsForASlowRelease(t *testing.T) {
	tr := &slowRelease{remoteTransport: remoteTransport{memory.New()},
		closing: make(chan struct{}), release: make(chan struct{})}
	b, err := bus.New(bus.WithTransport(tr))
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var once sync.Once
	if _, err := bus.Subscribe(b, "slow.release", func(ctx context.Context, _ ping) error {
		once.Do(func() { close(started) })
		<-ctx.Done()
		return ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	start(t, b, 5*time.Second, ping{})
	<-started
	closeCtx, closeCancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer closeCancel()
	closed := make(chan error, 1)
	go func() { closed <- b.Close(closeCtx) }()
	<-tr.closing // the handler returned: the workers ended
	// Hold the release well past Stop's grace (100ms): Close must still be
	// waiting for it, not have given up on a handler that returned.
	hold := time.NewTimer(500 * time.Millisecond)
	defer hold.Stop()
	select {
	case err := <-closed:
		close(tr.release)
		t.Fatalf("Close returned (%v) while the transport was still releasing the consumer", err)
	case <-hold.C:
	}
	close(tr.release)
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
}
