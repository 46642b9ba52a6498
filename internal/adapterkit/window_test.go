package adapterkit_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/internal/adapterkit"
	"github.com/heraldbus/herald/transport"
)

func TestFeedsStartsAllOrNoneAndCloseWaits(t *testing.T) {
	var f adapterkit.Feeds
	if f.Closed() {
		t.Fatal("a zero Feeds is closed")
	}
	started := make(chan int, 2)
	ended := make(chan int, 2)
	run := func(i int) func() {
		return func() {
			started <- i
			<-f.Closing()
			ended <- i
		}
	}
	if err := f.Start(run(1), run(2)); err != nil {
		t.Fatalf("Start on an open Feeds: %v", err)
	}
	<-started
	<-started
	select {
	case <-f.Closing():
		t.Fatal("Closing is closed before Close")
	default:
	}
	f.Close()
	if len(ended) != 2 {
		t.Fatalf("Close returned with %d of 2 goroutines ended", len(ended))
	}
	if !f.Closed() {
		t.Fatal("Closed is false after Close")
	}
	f.Close() // again: no panic, nothing to wait for
	ran := false
	if err := f.Start(func() { ran = true }); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Start after Close: %v, want ErrClosed", err)
	}
	f.Close()
	if ran {
		t.Fatal("Start after Close ran its function")
	}
}

func TestFeedsCloseWaitsForGo(t *testing.T) {
	var f adapterkit.Feeds
	release := make(chan struct{})
	var helperEnded bool
	if err := f.Start(func() {
		f.Go(func() {
			<-release
			helperEnded = true
		})
	}); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		f.Close()
		close(closed)
	}()
	<-f.Closing()
	select {
	case <-closed:
		t.Fatal("Close returned while a Go goroutine ran")
	default:
	}
	close(release)
	<-closed
	if !helperEnded {
		t.Fatal("Close returned before the Go goroutine ended")
	}
}

func TestRemoveDeletesOneMember(t *testing.T) {
	var mu sync.Mutex
	set := map[string]struct{}{"a": {}, "b": {}}
	adapterkit.Remove(&mu, set, "a")
	if _, ok := set["a"]; ok || len(set) != 1 {
		t.Fatalf("after Remove(a): %v", set)
	}
}

func TestWindowOfOneIsFreeWhenIdle(t *testing.T) {
	var w adapterkit.Window[int]
	w.Open(1)
	if w.Held != nil || w.Settled != nil {
		t.Fatal("Open(1) made a window of more than one")
	}
	if !w.Free(true) || w.Free(false) {
		t.Fatal("a window of one is free exactly when idle")
	}
	w.Stop() // nothing to stop: no panic
}

func TestWindowHoldsUpToNAndReportsSettlements(t *testing.T) {
	var w adapterkit.Window[int]
	w.Open(2)
	a, b := message.NewMessage("a", nil), message.NewMessage("b", nil)
	w.Held[a], w.Held[b] = 1, 2
	if w.Free(true) {
		t.Fatal("a full window of 2 is free")
	}
	var f adapterkit.Feeds
	if err := f.Start(func() { w.Watch(a) }, func() { w.Watch(b) }); err != nil {
		t.Fatal(err)
	}
	b.Nack()
	st := <-w.Settled
	if st.Msg != b || st.Acked {
		t.Fatalf("after b.Nack: %+v, want b nacked", st)
	}
	a.Ack()
	st = <-w.Settled
	if st.Msg != a || !st.Acked {
		t.Fatalf("after a.Ack: %+v, want a acked", st)
	}
	var acked, nacked []int
	ack := func(h int) { acked = append(acked, h) }
	nack := func(h int, wm *message.Message) {
		if wm != b {
			t.Errorf("nack of handle %d with message %s, want b", h, wm.UUID)
		}
		nacked = append(nacked, h)
	}
	w.Settle(st, ack, nack)
	w.Settle(adapterkit.Settlement{Msg: b}, ack, nack)
	w.Settle(adapterkit.Settlement{Msg: a, Acked: true}, ack, nack) // no longer held: left alone
	if len(acked) != 1 || acked[0] != 1 || len(nacked) != 1 || nacked[0] != 2 || len(w.Held) != 0 {
		t.Fatalf("settled: acked %v, nacked %v, held %d; want [1], [2], 0", acked, nacked, len(w.Held))
	}
	if !w.Free(false) {
		t.Fatal("an empty window of 2 is not free")
	}
	f.Close()
}

func TestWindowStopEndsWatchers(t *testing.T) {
	var w adapterkit.Window[int]
	w.Open(2)
	var f adapterkit.Feeds
	// One watcher waits for a settlement; three report one to a Settled
	// of room 2 that nobody reads, so one of them waits to send: Stop
	// ends both kinds.
	watch := []func(){func() { w.Watch(message.NewMessage("unsettled", nil)) }}
	for _, id := range []string{"x", "y", "z"} {
		m := message.NewMessage(id, nil)
		m.Ack()
		watch = append(watch, func() { w.Watch(m) })
	}
	if err := f.Start(watch...); err != nil {
		t.Fatal(err)
	}
	w.Stop()
	f.Close() // returns only once every watcher has
	if n := len(w.Settled); n > 2 {
		t.Fatalf("%d settlements in a Settled of room 2", n)
	}
}
