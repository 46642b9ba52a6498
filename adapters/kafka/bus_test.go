package kafka_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/middleware"
)

// Big is an event near the size limit.
type Big struct {
	Pad string `json:"pad"`
}

func (Big) EventName() string { return "kafka_test.Big" }

// An event of 900 KiB that fails permanently is poisoned (its record, with
// the payload, fits the poison topic), listed, and replayed to its handler
// once fixed; one over MaxMessageBytes is refused at Publish.
func TestLargeEventPoisonedAndReplayed(t *testing.T) {
	eachBroker(t, func(t *testing.T, b broker) {
		hb := bustest.New(t, bus.WithTransport(b.transport(t)),
			bus.WithDefaultRetry(middleware.RetryPolicy{MaxAttempts: 1}))
		var fixed atomic.Bool
		done := make(chan int, 1)
		if _, err := bus.Subscribe(hb, "big.h", func(ctx context.Context, e Big) error {
			if !fixed.Load() {
				return bus.Permanent(errors.New("not yet"))
			}
			done <- len(e.Pad)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		pad := strings.Repeat("x", 900<<10)
		if err := bus.Publish(testCtx(t), hb, Big{Pad: pad}); err != nil {
			t.Fatal(err)
		}
		var ids []string
		bustest.Eventually(t, wait, func() bool {
			recs, err := hb.Poison().List(testCtx(t), "big.h")
			ids = ids[:0]
			for _, r := range recs {
				ids = append(ids, r.ID)
				if len(r.Payload) < 900<<10 {
					t.Fatalf("record payload of %d bytes", len(r.Payload))
				}
			}
			return err == nil && len(recs) == 1
		}, "the large event's poison record")
		fixed.Store(true)
		if err := hb.Poison().Replay(testCtx(t), ids[0]); err != nil {
			t.Fatal(err)
		}
		select {
		case n := <-done:
			if n != len(pad) {
				t.Errorf("replayed event with a pad of %d bytes", n)
			}
		case <-time.After(wait):
			t.Fatal("the replayed event never arrived")
		}
		roomy := bustest.New(t, bus.WithTransport(b.transport(t)), bus.WithMaxEventSize(4<<20))
		err := bus.Publish(testCtx(t), roomy, Big{Pad: pad + strings.Repeat("y", 200<<10)})
		if !errors.Is(err, bus.ErrEventTooLarge) || !strings.Contains(err.Error(), "herald/kafka") {
			t.Errorf("1.1 MiB event: %v, want ErrEventTooLarge from the transport", err)
		}
	})
}
