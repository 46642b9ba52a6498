package adaptertest

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
)

func (s *suite) publishAsync(t *testing.T, be Backend) {
	const n = 500
	var mu sync.Mutex
	var failed []error
	b := s.bus(t, be, bus.WithAsyncWindow(64), bus.WithAsyncErrorHandler(func(id string, err error) {
		mu.Lock() // called on the transport's goroutines
		defer mu.Unlock()
		failed = append(failed, err)
	}))
	r := bustest.Record[Event](t, b, "async.handler")
	acks := make([]*bus.Ack, 0, n)
	ids := map[string]bool{}
	for i := range n {
		a, err := bus.PublishAsync(s.ctx(t), b, Event{Seq: i})
		if err != nil {
			t.Fatalf("PublishAsync %d: %v", i, err)
		}
		if ids[a.ID()] {
			t.Fatalf("two acks share the ID %q", a.ID())
		}
		ids[a.ID()] = true
		acks = append(acks, a)
	}
	for i, a := range acks {
		if err := a.Wait(s.ctx(t)); err != nil {
			t.Fatalf("ack %d: %v", i, err)
		}
		if a.Err() != nil {
			t.Fatalf("ack %d: Err %v after Wait returned nil", i, a.Err())
		}
	}
	got := seqs(t, r.Wait(t, n, s.cfg.timeout), n)
	if len(got) != n {
		t.Errorf("handled %d distinct events of %d", len(got), n)
	}
	// Bad input is refused at once, as by Publish.
	if a, err := bus.PublishAsync[*Event](s.ctx(t), b, nil); !errors.Is(err, bus.ErrInvalidEvent) || a != nil {
		t.Errorf("nil event: %v, %v", a, err)
	}
	if _, err := bus.PublishAsync(s.ctx(t), b, Event{}, bus.WithMetadata("bad key", "v")); !errors.Is(err, bus.ErrInvalidOption) {
		t.Errorf("bad option: %v", err)
	}
	if err := b.Close(s.ctx(t)); err != nil {
		t.Fatalf("Close: %v", err)
	}
	mu.Lock()
	if len(failed) != 0 {
		t.Errorf("error handler called for %d publishes: %v", len(failed), failed[0])
	}
	mu.Unlock()
	if _, err := bus.PublishAsync(context.Background(), b, Event{}); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("PublishAsync after Close: %v", err)
	}
}
