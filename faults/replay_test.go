package faults_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/transport"
)

// A handler's consumers are deleted (its service retired, or an operator
// cleaned up) while it has poison records. Replaying them used to return nil
// and delete the records while the stream, with interest retention and no
// consumer for the replay subject, kept nothing: the only copy was gone.
// Now Replay refuses with ErrNoHandler and keeps the record; once the
// handler is subscribed again, the replay delivers every record.
func TestReplayWithoutConsumer(t *testing.T) {
	const n = 20
	be := natsBackend(t)
	first := be.bus(t)
	if _, err := bus.Subscribe(first, "replay.gone", func(context.Context, Event) error {
		return bus.Permanent(errors.New("bug"))
	}); err != nil {
		t.Fatal(err)
	}
	publishRange(t, first, 0, n)
	waitPoison(t, first, "replay.gone", n)
	if err := first.Close(ctxFor(t, wait)); err != nil {
		t.Fatal(err)
	}
	// The handler's consumers go: its event topic's and its replay topic's.
	js := be.js(t)
	ctx := ctxFor(t, wait)
	for _, topic := range []string{eventName, transport.ReplayTopic("replay.gone")} {
		ci := be.consumer(t, "replay.gone", topic)
		if err := js.DeleteConsumer(ctx, be.streamName(), ci.Name); err != nil {
			t.Fatalf("delete consumer %s: %v", ci.Name, err)
		}
	}

	second := be.bus(t)
	begin := time.Now()
	replayed, err := second.Poison().ReplayAll(ctx, "replay.gone")
	if !errors.Is(err, bus.ErrNoHandler) || replayed != 0 {
		t.Fatalf("ReplayAll with no consumer = %d, %v; want 0, ErrNoHandler", replayed, err)
	}
	kept := len(poisonList(t, second, "replay.gone"))
	if kept != n {
		t.Fatalf("%d records kept after the refused replay, want %d", kept, n)
	}

	c := subscribeTally(t, second, "replay.gone", nil)
	replayed, err = second.Poison().ReplayAll(ctx, "replay.gone")
	if err != nil || replayed != n {
		t.Fatalf("ReplayAll once subscribed = %d, %v", replayed, err)
	}
	c.waitDistinct(t, n, wait, "every record replayed")
	c.check(t, n, "replayed records")

	f := figures{fault: "19-replay-without-consumer", transport: "nats", handlers: 1, sent: n,
		delivered: c.distinct(), dups: c.duplicates(), recover: time.Since(begin)}
	f.add("refused_with", "ErrNoHandler")
	f.add("records_kept", kept)
	f.log(t)
}
