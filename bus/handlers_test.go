package bus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
)

// Subscription.Delete called from the handler's own worker cannot wait for
// the stop: it deletes nothing and says so; DeleteHandler then works once
// the handler is done. On a closed bus, DeleteHandler returns ErrClosed.
func TestDeleteFromAHandlerAndAfterClose(t *testing.T) {
	b := newMemBus(t, 8)
	got := make(chan error, 1)
	var sub *bus.Subscription
	ready := make(chan struct{})
	var err error
	sub, err = bus.Subscribe(b, "self.deleting", func(ctx context.Context, e ping) error {
		<-ready
		got <- sub.Delete(ctx)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	close(ready)
	ctx := start(t, b, 10*time.Second, ping{})
	select {
	case err := <-got:
		if !errors.Is(err, bus.ErrHandlerSubscribed) {
			t.Errorf("Delete from the handler: %v, want ErrHandlerSubscribed", err)
		}
	case <-ctx.Done():
		t.Fatal("the handler never ran")
	}
	await(t, ctx, sub.Done(), "the handler never stopped")
	if err := b.DeleteHandler(ctx, "self.deleting"); err != nil {
		t.Errorf("DeleteHandler once stopped: %v", err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteHandler(ctx, "self.deleting"); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("DeleteHandler on a closed bus: %v, want ErrClosed", err)
	}
}

// Memory keeps no history: WithStartFrom is accepted and the handler starts
// with the events published after it subscribed.
func TestStartFromOnMemory(t *testing.T) {
	b := bustest.New(t)
	if err := bus.Publish(context.Background(), b, ping{N: 1}); err != nil {
		t.Fatal(err)
	}
	r := bustest.Record[ping](t, b, "late", bus.WithStartFrom(time.Time{}))
	if err := bus.Publish(context.Background(), b, ping{N: 2}); err != nil {
		t.Fatal(err)
	}
	if got := r.Wait(t, 1, 10*time.Second); got[0].N != 2 {
		t.Errorf("got %+v, want only the event published after Subscribe", got)
	}
	hs, err := b.OrphanHandlers(context.Background())
	if err != nil || len(hs) != 0 {
		t.Errorf("OrphanHandlers = %+v, %v: the only handler is subscribed here", hs, err)
	}
}
